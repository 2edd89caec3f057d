"""The paper's whole recipe in one work directory (``rajax run``): ``run_recipe``, its table rows
(``rows``) and its figures (``report``)."""
