"""``python -m data_prep {synthetic,compress,prepare}``: options from flags or a YAML file.

With no ``--root``, ``prepare`` makes the embedded default: the synthetic FF++ dataset and its
shards under ``$SFFB_HOME`` (default ``./outputs``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import yaml

from data_prep import defaults
from data_prep.compress import CompressConfig, compress_dataset
from data_prep.image_columns import IMAGE_FORMATS
from data_prep.prepare import InputUnavailableError, PrepareConfig, prepare
from data_prep.synthetic import main as synthetic_main


def load_config(cls, yaml_path: Path | None, flags: dict):
    """``cls`` from a YAML mapping, overridden by the flags that were given."""
    values = {}
    if yaml_path is not None:
        loaded = yaml.safe_load(Path(yaml_path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{yaml_path}: expected a mapping of {cls.__name__} options")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ValueError(f"{yaml_path}: unknown option {unknown[0]!r}; known: {sorted(known)}")
        values.update(loaded)
    values.update({k: v for k, v in flags.items() if v is not None})
    return cls(**values)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file of options (flags override it)")
    parser.add_argument("--dataset", help="ffpp, celebdf or folder")
    parser.add_argument("--root", help="the dataset's folder")
    parser.add_argument("--levels", nargs="+", help="compression levels, e.g. raw c23 c40")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("synthetic", help="write the synthetic FF++-layout dataset", add_help=False)

    compress = commands.add_parser("compress", help="make H.264 copies of the raw videos")
    _common(compress)
    compress.add_argument("--mode", choices=["crf", "qp"], help="rate control (default crf)")
    compress.add_argument(
        "--fast-encode", dest="bit_exact", action="store_const", const=False,
        help="x264's SIMD code: ~4x faster, but the bytes depend on the CPU (and on AVX-512 "
        "CPUs can change between runs); default: its C code, the same bytes on every run and CPU",
    )  # fmt: skip

    prep = commands.add_parser("prepare", help="videos -> paired face-crop Parquet shards")
    _common(prep)
    prep.add_argument("--output", help="folder or URI (s3://...) for shards and manifest.json")
    prep.add_argument("--methods", nargs="+", help="manipulations/folders to include")
    prep.add_argument("--splits-dir", dest="splits_dir", help="FF++ train/val/test.json folder")
    prep.add_argument("--frames-per-video", dest="frames_per_video", type=int)
    prep.add_argument("--crop-size", dest="crop_size", type=int)
    prep.add_argument("--margin", type=float)
    prep.add_argument("--detector", help="haar or none (pre-cropped faces)")
    prep.add_argument("--shard-target-mb", dest="shard_target_mb", type=float)
    prep.add_argument("--seed", type=int)
    prep.add_argument(
        "--image-format", dest="image_format", choices=IMAGE_FORMATS,
        help="how crops are stored: raw (RGB planes, zstd; the default, read without decoding) "
        "or png (smaller on photographs, decoded on every read)",
    )  # fmt: skip
    prep.add_argument("--overwrite", action="store_true", help="redo a finished output")

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["synthetic"]:
        synthetic_main(argv[1:])
        return 0
    args = parser.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "overwrite")}
    try:
        if args.command == "compress":
            config = load_config(CompressConfig, args.config, flags)
            errors = compress_dataset(config)
            for error in errors:
                print(f"skipped: {error}", file=sys.stderr)
            return 0
        if args.config is None and args.root is None:
            overrides = {k: v for k, v in flags.items() if v is not None}
            config = defaults.embedded_prepare_config(**overrides)
            manifest = defaults.ensure_embedded_shards(overwrite=args.overwrite, **overrides)
        else:
            config = load_config(PrepareConfig, args.config, flags)
            if not config.output:
                raise ValueError("--output is required with --root or --config")
            manifest = prepare(config, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, InputUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: manifest[k] for k in ("rows", "total_rows")}, indent=2))
    print(f"{len(manifest['shards'])} shards, {len(manifest['skipped'])} skipped: {config.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
