"""``rajax predict VIDEO --workdir RUN``: the activity of one video, with each region's attention.

Runs the whole chain of a trained work directory: actor detection (YOLO, in its own process; only
when the config uses the actor region), the regions, the backbone's features and the best head,
then prints the activity, the class probabilities and each region's attention weight.
``--visualize PNG`` draws a frame with each region outlined and shaded by its weight.
"""

from __future__ import annotations

HELP = "classify one video with a trained run and show each region's attention weight"


def add_arguments(parser) -> None:
    parser.add_argument("video", help="video file")
    parser.add_argument("--workdir", required=True, help="work directory of a trained run")
    parser.add_argument("--stage", choices=("train_head", "end_to_end"), default="train_head",
                        help="which trained model to use (default: the head of stage 3)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--visualize", metavar="PNG", help="write the regions shaded by attention to PNG")
    parser.add_argument("--actors", metavar="FILE", help="a detect-actors output holding this video "
                        "(default: detect now)")
    parser.add_argument("--detector-weights", metavar="PATH", help="YOLO checkpoint (default yolo11n.pt)")
    parser.add_argument("--detect-every", type=int, default=5, metavar="N",
                        help="run the detector on every N-th frame (default 5)")


def _actor_square(args, config):
    """The actor square of the video (square-frame pixels), or None (full frame / not needed)."""
    import tempfile
    from pathlib import Path

    from rajax.data.records import actor_square_from_record
    from rajax.detection import detect_actors, load_actor_records, video_key
    from rajax.errors import RajaxError

    if "actor" not in config.data.regions:
        return None
    if args.actors:
        records = load_actor_records(args.actors)
        record = records.get(video_key(args.video))
        if record is None:
            raise RajaxError(f"{args.actors}: no record for {args.video}")
        return actor_square_from_record(record)
    with tempfile.TemporaryDirectory(prefix="rajax-predict-") as scratch:
        records = detect_actors([args.video], Path(scratch) / "actors.jsonl",
                                detector_weights=args.detector_weights, every=args.detect_every,
                                progress=False)
    record = records[0]
    if record.get("status") == "failed":
        raise RajaxError(record.get("error") or f"{args.video}: actor detection failed")
    return actor_square_from_record(record)


def run(args) -> int:
    import json
    from pathlib import Path

    from rajax.errors import RajaxError

    if not Path(args.video).is_file():
        raise RajaxError(f"{args.video}: no such video file")
    from rajax.train import inference

    # Everything about the trained run is checked before minutes of detection: the head, its
    # config, and that the backbone is the one whose features trained it.
    config = inference.check_trained(args.workdir, args.stage)
    backbone = inference.load_backbone_for_prediction(args.workdir, config, args.stage)
    # Detection runs in a process of its own (torch and TensorFlow never share an interpreter).
    actor_square = _actor_square(args, config)
    result = inference.predict_video(args.workdir, args.video, stage=args.stage,
                                     actor_square=actor_square, config=config, backbone=backbone)
    if args.visualize:
        from rajax.pictures import draw_attention

        result["visualization"] = str(draw_attention(result, args.visualize))
    print(json.dumps(result, indent=2) if args.json else inference.format_prediction(result))
    return 0
