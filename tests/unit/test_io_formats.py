import numpy as np
import pytest

from spaceport.core.errors import ModelInvalid
from spaceport.geometry.colmap import (
    Camera,
    Image,
    Model,
    Points3D,
    qvec_to_rotmat,
    read_model,
    rotmat_to_qvec,
    write_model_binary,
    write_model_text,
)
from spaceport.geometry.splat import Splat, ply_antialiased, read_ply, write_ply


def _model(rng):
    q = rotmat_to_qvec(qvec_to_rotmat(np.array([0.9, 0.1, 0.2, 0.3])))
    return Model(
        {1: Camera(1, "PINHOLE", 64, 48, np.array([50.0, 51, 32, 24]))},
        {1: Image(1, q, np.array([1.0, 2, 3]), 1, "a b.png", np.array([[1.0, 2]]), np.array([7]))},
        Points3D(np.array([7]), rng.normal(size=(1, 3)), np.array([[1, 2, 3]], dtype=np.uint8),
                 np.array([0.5]), np.array([0])),
    )


@pytest.mark.parametrize("writer", [write_model_binary, write_model_text])
def test_colmap_model_round_trip(tmp_path, writer):
    rng = np.random.default_rng(0)
    m = _model(rng)
    writer(m, tmp_path)
    r = read_model(tmp_path)
    assert r.images[1].name == "a b.png"
    np.testing.assert_allclose(r.points.xyz, m.points.xyz)
    np.testing.assert_allclose(r.cameras[1].params, m.cameras[1].params)
    np.testing.assert_allclose(r.images[1].world_to_camera(), m.images[1].world_to_camera())


def test_rotation_quaternion_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=4)
        R = qvec_to_rotmat(q)
        np.testing.assert_allclose(qvec_to_rotmat(rotmat_to_qvec(R)), R, atol=1e-12)


def test_missing_model_is_model_invalid(tmp_path):
    with pytest.raises(ModelInvalid):
        read_model(tmp_path)


def test_ply_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    f = lambda *s: rng.normal(size=s).astype("f4")  # noqa: E731
    s = Splat(f(n, 3), f(n, 3), f(n, 4), f(n), f(n, 3), f(n, 15, 3))
    write_ply(s, tmp_path / "a.ply")
    t = read_ply(tmp_path / "a.ply")
    assert t.sh_degree == 3
    for name in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        np.testing.assert_array_equal(getattr(s, name), getattr(t, name))


def test_an_antialiased_splat_is_tagged_in_its_ply_and_read_back_so(tmp_path):
    from spaceport.stages.compress.inputs import read_model

    rng = np.random.default_rng(1)
    f = lambda *s: rng.normal(size=s).astype("f4")  # noqa: E731
    for aa in (True, False):
        write_ply(Splat(f(9, 3), f(9, 3), f(9, 4), f(9), f(9, 3), f(9, 3, 3), antialiased=aa), tmp_path / "a.ply")
        head = (tmp_path / "a.ply").read_bytes().split(b"end_header")[0]
        assert (b"comment SplatRenderMode: mip\n" in head) is aa
        # both readers: plyfile's and the compress stage's own header parser
        assert read_ply(tmp_path / "a.ply").antialiased is aa
        assert read_model(tmp_path / "a.ply", max_gaussians=100).antialiased is aa
        assert read_ply(tmp_path / "a.ply").subset(np.arange(3)).with_sh_degree(0).antialiased is aa


@pytest.mark.parametrize(("comments", "expected"), [
    ([], False), (["SplatRenderMode: mip"], True), (["splatrendermode: MIP "], True),
    (["SplatRenderMode: default"], False), (["antialiased 1"], True), (["antialiased 0"], False),
    (["SplatRenderMode: mip", "antialiased 0"], False),  # the last tag wins (splat-transform's rule)
    (["antialiased 1", "SplatRenderMode: fancy"], True),  # an unknown mode changes nothing
    (["antialiased yes", "made by a scanner"], False),
])
def test_ply_comments_tag_an_antialiased_splat_as_splat_transform_reads_them(comments, expected):
    assert ply_antialiased(comments) is expected


def test_not_a_ply_is_model_invalid(tmp_path):
    p = tmp_path / "x.ply"
    p.write_bytes(b"hello")
    with pytest.raises(ModelInvalid, match="not a PLY"):
        read_ply(p)
