"""flow_speed on a machine whose OpenCV lacks cv2.optflow (the lent GPU machine): the OpenCV
TV-L1 rows say skipped instead of crashing, and main returns 0 with the agreement skipped."""
import torch

from benchmarks.speed import flow_speed


def test_without_cv2_optflow_the_opencv_tvl1_rows_are_skipped(fixtures, monkeypatch, tmp_path,
                                                              capsys):
    monkeypatch.setattr(flow_speed, "HAS_TVL1", False)
    df, warm = flow_speed.speed_table(fixtures, 3, torch.device("cpu"), quick=True,
                                      torch_paths=())
    assert list(df["status"]) == ["skipped: this OpenCV has no cv2.optflow"] * 2
    assert list(df["workers"]) == [1, 2] and warm == {}
    assert flow_speed.main(["--fixtures", str(fixtures), "--sections", "agreement", "quality",
                            "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "agreement: skipped (this OpenCV has no cv2.optflow)" in out
    assert "quality: skipped (this OpenCV has no cv2.optflow)" in out
    assert not any(tmp_path.iterdir())
