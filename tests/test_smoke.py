"""The README's library smoke run: KD steps on random data through the public API."""

import math

from sffb import smoke


def test_smoke_run_prints_shapes_and_learns(capsys):
    totals = smoke.run("test_resnet", image_size=64, batch_size=4, steps=8)
    printed = capsys.readouterr().out
    assert "SFFB-test_resnet at 64x64" in printed
    assert "spatial_map  (4, 192, 4, 4)" in printed
    assert all(math.isfinite(t) for t in totals)
    assert min(totals[-3:]) < totals[0]  # one batch, eight Adam steps: it fits
