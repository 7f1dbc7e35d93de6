"""Start the KSCU Workbench in the browser: `python app.py`, then open http://127.0.0.1:7860.

Offline by default (HF_HUB_OFFLINE=1; --online allows hub downloads), bound to 127.0.0.1
(--host/--port or KSCU_HOST/KSCU_PORT; Hugging Face Spaces' GRADIO_SERVER_NAME/PORT are honoured),
never shared through a Gradio tunnel unless --share is given. One heavy job runs at a time.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys


def _int_env(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        sys.exit(f"{name}={value!r} is not a whole number")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("KSCU_HOST") or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                        help="address to bind (default 127.0.0.1: this computer only; 0.0.0.0 for the network)")
    parser.add_argument("--port", type=int, default=_int_env("KSCU_PORT") or _int_env("GRADIO_SERVER_PORT") or 7860)
    parser.add_argument("--model", default=None, help="model loaded at start: demo (default), a diffusers folder, an SD1.x .safetensors file or a hub id")
    parser.add_argument("--family", choices=("demo", "sd1"), default=None,
                        help="domain of the model loaded at start (default: demo for a demo model folder, else sd1)")
    parser.add_argument("--judge", default=None,
                        help="judge of the model loaded at start: a CLIP folder or hub id, or nudenet (default: the model's own)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--online", action="store_true", help="allow Hugging Face hub downloads (default: offline)")
    parser.add_argument("--share", action="store_true", help="also publish through a public gradio.live link (off by default)")
    parser.add_argument("--quick-iterations", type=int, default=_int_env("KSCU_QUICK_ITERATIONS"),
                        help="iterations of Quick erase (default: the preset; smaller only for fast tests and demos)")
    parser.add_argument("--quick-eval", type=int, default=_int_env("KSCU_QUICK_EVAL"),
                        help="test prompts per metric set in Quick erase (default: a full evaluation's 100 + 120; smaller only for fast tests)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Before gradio and huggingface_hub are imported: they read these at import time.
    if args.online:
        os.environ["HF_HUB_OFFLINE"] = "0"
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from kscu.models import ModelLoadError, load_model
    from ui.layout import CSS, THEME, build_app
    from ui.state import QuickSettings, WorkbenchState

    for flag, value in (("--quick-iterations", args.quick_iterations), ("--quick-eval", args.quick_eval)):
        if value is not None and value < 1:
            sys.exit(f"{flag} must be at least 1")
    quick = QuickSettings(iterations=args.quick_iterations)
    if args.quick_eval is not None:
        quick.n_erase = quick.n_retain = args.quick_eval
    state = WorkbenchState(online=args.online, quick=quick)
    try:
        state.set_model(load_model(args.model, device=args.device, family=args.family, judge=args.judge))
    except ModelLoadError as exc:  # start anyway: the Model tab says why and loads another
        state.model_error = str(exc)
        logging.warning("no model loaded at start: %s", exc)
    demo = build_app(state)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, theme=THEME, css=CSS,
                allowed_paths=[str(state.files_dir)], footer_links=["api"])


if __name__ == "__main__":
    main()
