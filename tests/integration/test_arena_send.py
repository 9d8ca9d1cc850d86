"""Shim 5 (runtime/fastchat_compat.py) through FastChat's real anony arena and gradio's own output check:
starting a battle with the Send button no longer makes gradio warn about too many output values.

It runs in a fresh interpreter: importing FastChat's UI leaves an event loop and sockets behind, which
pytest would report as unraisable warnings of whichever test runs next."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys, warnings
import gradio as gr
from runtime import fastchat_compat

if "--shim" in sys.argv:  # the web role's entry point, applied twice: idempotent
    multi = fastchat_compat.apply_for_web(lambda name: None)
    multi = fastchat_compat.apply_for_web(lambda name: None)
else:  # FastChat's UI imported without shim 5
    fastchat_compat._prepare_fastchat_logging()
    multi = fastchat_compat.import_torch_free("fastchat.serve.gradio_web_server_multi")
    fastchat_compat._reclaim_logging()
anony = sys.modules["fastchat.serve.gradio_block_arena_anony"]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # gradio 5's deprecation notes about FastChat 0.2.36's UI code
    with gr.Blocks() as demo:
        multi.build_side_by_side_ui_anony(["model-a", "model-b"])
events = [f for f in demo.fns.values() if f.fn is anony.add_text]
assert len(events) == 2, events  # the textbox's submit and the Send button's click
# add_text returns: 2 states, 2 chatbots, the textbox, 6 buttons and the slow-model hint.
with warnings.catch_warnings():
    warnings.simplefilter("error")
    for event in events:
        demo.validate_outputs(event, [None] * 12)
print("ok")
"""


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHECK, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_send_and_enter_both_take_everything_add_text_returns() -> None:
    """With the shim, both events of add_text take its 12 values; FastChat alone gives Send 11."""
    shimmed = check("--shim")
    assert shimmed.returncode == 0, shimmed.stderr
    assert shimmed.stdout.strip().endswith("ok")
    unshimmed = check()
    assert unshimmed.returncode != 0
    assert "add_text) returned too many output values (needed: 11, returned: 12)" in unshimmed.stderr
