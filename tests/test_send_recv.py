"""Point-to-point transfers (pipeline stages): Vidur's send_recv tables, the latency-bandwidth
fit, the operator CSV rows, and the pipeline cost model pricing its hand-offs with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import llmsim
from llmsim.calibration import fit as F
from llmsim.calibration.llmsim_csv import read_operator_csv
from llmsim.calibration.readers import read_vidur_send_recv
from llmsim.calibration.records import operator_frame
from llmsim.cost.pipeline import PipelineCostModel
from llmsim.errors import ConfigError
from llmsim.hardware import get_hardware

HW = get_hardware("H100-SXM")
HEADER = ",time_stats.send_recv.median,rank,num_workers,size,collective,devices_per_node\n"


def test_vidur_send_recv_rows_know_their_scope(tmp_path: Path) -> None:
    path = tmp_path / "send_recv.csv"
    path.write_text(
        HEADER + "0,0.012,0,2,2048,send_recv,2\n1,0.025,0,2,2048,send_recv,1\n"
        "2,0.3,0,2,67108864,send_recv,2\n"
    )
    rows = read_vidur_send_recv(path)
    assert list(rows["op"]) == ["intra-node", "inter-node", "intra-node"]
    assert list(rows["nbytes"]) == [2048, 2048, 67108864]
    assert rows["time_s"].tolist() == pytest.approx([12e-6, 25e-6, 3e-4])
    path.write_text(HEADER.replace("size", "bytes") + "0,0.012,0,2,2048,send_recv,2\n")
    with pytest.raises(ConfigError, match="size"):
        read_vidur_send_recv(path)


def test_latency_and_bandwidth_recovered_per_scope() -> None:
    size, scope = np.meshgrid(np.geomspace(2e3, 6.7e7, 12), [0, 1], indexing="ij")
    rows = operator_frame(
        family="send_recv",
        op=np.where(scope.ravel() == 0, "intra-node", "inter-node"),
        nbytes=size.ravel(),
        gpus=2.0,
    )
    truth = {"intra-node": (8.0, 350.0), "inter-node": (20.0, 36.0)}
    t = np.array(
        [
            truth[o][0] * 1e-6 + b / (truth[o][1] * 1e9)
            for o, b in zip(rows["op"], rows["nbytes"], strict=True)
        ]
    )
    fits = F.fit_send_recv(rows.assign(time_s=t), HW)
    assert {f.scope for f in fits} == set(truth)
    for f in fits:
        assert (f.latency_us, f.bandwidth_gbps) == pytest.approx(truth[f.scope], rel=0.01)
    pred = F.predict_send_recv_rows(fits, rows, HW)
    assert pred == pytest.approx(t, rel=0.01)


def test_operator_csv_send_recv_rows(tmp_path: Path) -> None:
    csv = tmp_path / "p2p.csv"
    csv.write_text(
        "family,op,bytes,time_ms\nsend_recv,,4096,0.01\nsend_recv,inter-node,4096,0.03\n"
    )
    rows = read_operator_csv(csv)
    assert list(rows["op"]) == ["intra-node", "inter-node"] and set(rows["gpus"]) == {2.0}
    csv.write_text("family,op,bytes,time_ms\nsend_recv,nvlink,4096,0.01\n")
    with pytest.raises(ConfigError, match="line 2: column 'op' has 'nvlink'; valid: intra-node"):
        read_operator_csv(csv)


def _pipeline(kind: str) -> PipelineCostModel:
    sc = llmsim.load_scenario(Path(__file__).parent.parent / "scenarios" / "quickstart.yaml")
    sc = sc.with_overrides(
        {
            "model": "Llama-3.1-70B",
            "tensor_parallel": 4,
            "engine.cost": {"kind": kind},
            "cluster": {"pools": [{"name": "pp", "pipeline_parallel": 2}]},
        }
    )
    cost = llmsim.build_replica(sc).cost
    assert isinstance(cost, PipelineCostModel)
    return cost


def test_pipeline_hand_offs_use_the_measured_transfer() -> None:
    cal = HW.calibration
    assert cal is not None
    measured = cal.collectives.transfer("intra-node")
    assert measured is not None and measured.bandwidth_gbps > 100
    calibrated = _pipeline("calibrated")
    assert calibrated.link_bw == pytest.approx(measured.bandwidth_gbps * 1e9)
    assert calibrated.link_lat == pytest.approx(measured.latency_us * 1e-6)
    roofline = _pipeline("roofline")  # the datasheet figures, as before
    assert roofline.link_bw == pytest.approx(HW.interconnect.bandwidth_gbps * 1e9)
