"""How ``patrol run --cluster`` cuts a site into camera groups (no Ray needed)."""

from __future__ import annotations

import pytest

from patrol.cluster import ClusterError, group_size, plan_groups


def test_groups_fit_on_the_nodes_left_after_losing_the_largest() -> None:
    # two 2-CPU workers and a head without CPUs: room for 2 one-CPU groups without the largest node
    assert group_size(12, [0.0, 2.0, 2.0]) == 6
    # 2,000 cameras on 9 hosts of 16 CPUs: 128 slots without one host, 16 cameras a group at most
    assert group_size(2000, [16.0] * 9) == 16
    assert group_size(3, [8.0, 8.0]) == 1
    assert group_size(10, [4.0]) == 3  # a single node: nothing to survive, all its CPUs are used


def test_plan_groups_keeps_every_camera_once_in_order() -> None:
    ids = [f"cam{i}" for i in range(13)]
    groups = plan_groups(ids, 6)
    assert groups == [ids[:6], ids[6:12], ids[12:]]
    assert [c for g in groups for c in g] == ids


def test_a_cluster_without_cpus_is_an_error() -> None:
    with pytest.raises(ClusterError, match="no node offers CPUs"):
        group_size(4, [0.0])


def test_cluster_refuses_no_publish(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from patrol.cli import main

    site = tmp_path / "site.yaml"
    site.write_text("site: {name: s}\ncameras: [{id: c, url: x.mp4, grid_cell: G}]\n")
    assert main(["run", "--config", str(site), "--cluster", "127.0.0.1:1", "--no-publish"]) != 0
    assert "--no-publish cannot go with --cluster" in capsys.readouterr().err  # before Ray is even asked
