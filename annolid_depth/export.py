"""`python -m annolid_depth.export --model video_depth_anything_vits --onnx OUT_DIR`: the
network as four ONNX graphs and `export.json`, for use outside this package (what the graphs
take and return: `engine/graphs.py`). OUT_DIR is checked before any work: a new or empty
folder, or with `--overwrite` one holding an earlier export (`engine/artefacts.py`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .engine.artefacts import check_target, remove_created
from .engine.graphs import export_onnx
from .engine.loading import load_model
from .errors import DepthError
from .weights import ensure_checkpoint, get_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m annolid_depth.export", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint key, e.g. video_depth_anything_vits")
    parser.add_argument("--onnx", required=True, type=Path, metavar="OUT_DIR", help="folder to write the graphs to")
    parser.add_argument("--checkpoint-root", type=Path, help="folder with the .pth checkpoints")
    parser.add_argument("--overwrite", action="store_true", help="replace the graphs of an earlier export in OUT_DIR")
    args = parser.parse_args(argv)
    created: list[Path] = []
    try:
        entry = get_checkpoint(args.model)
        created = check_target(args.onnx, args.overwrite)
        checkpoint = ensure_checkpoint(entry.encoder, entry.metric, args.checkpoint_root)
        model = load_model(str(checkpoint), checkpoint.stat().st_mtime_ns, entry.encoder, entry.metric, "cpu")
        spec = export_onnx(model, args.onnx, checkpoint, overwrite=args.overwrite)
    except (DepthError, ValueError, OSError) as exc:
        remove_created(created)
        print(f"export: {exc}", file=sys.stderr)
        return 1
    print(f"{spec['model']}: {', '.join(spec['graphs'])} -> {args.onnx}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
