"""Clip-feature stores: HDF5 and folder (.npy / .pt) round trips, laziness, and every validation error."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from grounding.data.features import (
    FolderFeatureStore,
    HDF5FeatureStore,
    compress_ranges,
    open_feature_store,
)
from grounding.errors import GroundingError, InputError


def _feats(num_clips: int, width: int = 4, offset: float = 0.0) -> np.ndarray:
    return (np.arange(num_clips * width, dtype=np.float64).reshape(num_clips, width) + offset) / 7.0


def _write_h5(path, videos: dict, file_attrs: dict | None = None) -> str:
    with h5py.File(path, "w") as handle:
        handle.attrs.update(file_attrs or {})
        for video_id, array in videos.items():
            handle.create_dataset(video_id, data=array)
    return str(path)


def test_hdf5_round_trip_with_attrs(tmp_path):
    path = tmp_path / "feats.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["backbone"] = "efficientnet-lite0"
        handle.attrs["clip_seconds"] = 1.0
        handle.create_dataset("b_vid", data=_feats(3))
        dataset = handle.create_dataset("a_vid", data=_feats(5, offset=1.0).astype(np.float16))
        dataset.attrs["duration"] = 5.0
        dataset.attrs["clip_seconds"] = 0.5
    with open_feature_store(path) as store:
        assert isinstance(store, HDF5FeatureStore)
        assert store.video_ids() == ["a_vid", "b_vid"]
        assert len(store) == 2 and "a_vid" in store and "c_vid" not in store and 3 not in store
        assert store.dim == 4
        clip_feats = store.get("b_vid")
        assert clip_feats.dtype == np.float32 and clip_feats.shape == (3, 4)
        np.testing.assert_allclose(clip_feats, _feats(3), rtol=1e-6)
        np.testing.assert_allclose(store.get("a_vid"), _feats(5, offset=1.0), rtol=1e-3)
        assert store.attrs("a_vid") == {"backbone": "efficientnet-lite0", "clip_seconds": 0.5, "duration": 5.0}
        assert store.attrs("b_vid") == {"backbone": "efficientnet-lite0", "clip_seconds": 1.0}
        assert repr(store) == f"HDF5FeatureStore('{path}', videos=2)"


def test_hdf5_nested_group_per_video(tmp_path):
    path = tmp_path / "activitynet_c3d.hdf5"
    with h5py.File(path, "w") as handle:
        group = handle.create_group("v_abc")
        group.attrs["fps"] = 25.0
        group.create_dataset("c3d_features", data=_feats(6, width=3))
        both = handle.create_group("v_two")
        both.create_dataset("c3d_features", data=_feats(2, width=3))
        both.create_dataset("extra", data=_feats(2, width=3))
    with open_feature_store(path, expected_dim=3) as store:
        np.testing.assert_allclose(store.get("v_abc"), _feats(6, width=3), rtol=1e-6)
        assert store.attrs("v_abc") == {"fps": 25.0}
        with pytest.raises(InputError, match=r"group holding 2 datasets \['c3d_features', 'extra'\].*member=NAME"):
            store.get("v_two")
    with HDF5FeatureStore(path, member="c3d_features") as store:
        assert store.get("v_two").shape == (2, 3)


def test_hdf5_get_reads_only_the_requested_video(tmp_path):
    path = _write_h5(tmp_path / "f.h5", {"good": _feats(4), "bad_rank": np.zeros((2, 3, 4)), "z_nan": _feats(2)})
    with h5py.File(path, "a") as handle:
        handle["z_nan"][1, 2] = np.nan
    store = open_feature_store(path)
    np.testing.assert_allclose(store.get("good"), _feats(4), rtol=1e-6)
    with pytest.raises(InputError, match=r"video 'bad_rank' has shape \(2, 3, 4\) \(rank 3\)"):
        store.get("bad_rank")
    store.close()


def test_folder_npy_and_pt_round_trip(tmp_path):
    np.save(tmp_path / "3MSZA.npy", _feats(3).astype(np.float16))
    torch.save(torch.tensor(_feats(2, offset=5.0), dtype=torch.bfloat16), tmp_path / "AO8RW.pt")
    (tmp_path / "README.txt").write_text("ignored")
    with open_feature_store(tmp_path, expected_dim=4) as store:
        assert isinstance(store, FolderFeatureStore)
        assert store.video_ids() == ["3MSZA", "AO8RW"]
        assert store.dim == 4 and store.attrs("3MSZA") == {}
        from_npy = store.get("3MSZA")
        assert from_npy.dtype == np.float32 and from_npy.shape == (3, 4)
        np.testing.assert_allclose(from_npy, _feats(3), rtol=1e-3)
        from_pt = store.get("AO8RW")
        assert from_pt.dtype == np.float32 and from_pt.shape == (2, 4)
        np.testing.assert_allclose(from_pt, _feats(2, offset=5.0), rtol=1e-2)


def test_folder_dim_comes_from_first_video_without_expected_dim(tmp_path):
    np.save(tmp_path / "a.npy", _feats(3, width=4))
    np.save(tmp_path / "b.npy", _feats(3, width=5))
    store = FolderFeatureStore(tmp_path)
    assert store.dim == 4
    with pytest.raises(InputError, match=r"video 'b' has feature width D=5, but video 'a' gives D=4"):
        store.get("b")


def test_folder_pt_must_hold_a_tensor(tmp_path):
    torch.save({"feats": torch.zeros(2, 4)}, tmp_path / "vid.pt")
    with pytest.raises(InputError, match=r"vid\.pt holds a dict, expected one tensor \[T, D\]"):
        FolderFeatureStore(tmp_path).get("vid")


def test_folder_same_id_in_npy_and_pt_is_rejected(tmp_path):
    np.save(tmp_path / "vid.npy", _feats(2))
    torch.save(torch.zeros(2, 4), tmp_path / "vid.pt")
    with pytest.raises(InputError, match=r"1 video ids have more than one file, e.g. 'vid' \(vid\.npy, vid\.pt\)"):
        FolderFeatureStore(tmp_path)


def test_ids_drop_video_file_extension_like_the_annotation_readers(tmp_path):
    path = _write_h5(tmp_path / "tall_c3d_features.hdf5", {"s13-d21.avi": _feats(3), "s14-d22.avi": _feats(2)})
    with open_feature_store(path) as store:
        assert store.video_ids() == ["s13-d21", "s14-d22"]
        assert "s13-d21" in store and "s13-d21.avi" not in store
        np.testing.assert_allclose(store.get("s13-d21"), _feats(3), rtol=1e-6)
    np.save(tmp_path / "clip.mp4.npy", _feats(2))
    np.save(tmp_path / "._clip.npy", _feats(2))  # macOS metadata file: ignored
    assert FolderFeatureStore(tmp_path).video_ids() == ["clip"]
    clash = _write_h5(tmp_path / "clash.h5", {"a": _feats(1), "a.avi": _feats(1)})
    with pytest.raises(InputError, match=r"video ids have more than one dataset, e.g. 'a' \(a, a\.avi\)"):
        open_feature_store(clash)


def test_nan_clips_are_named_as_ranges(tmp_path):
    clip_feats = _feats(50)
    clip_feats[[12, 13, 14], 0] = np.nan
    clip_feats[40, 3] = np.nan
    path = _write_h5(tmp_path / "features.h5", {"3MSZA": clip_feats})
    expected = r"features\.h5: video '3MSZA' has NaN in clips 12-14, 40 \(of T=50\); re-extract it\."
    with pytest.raises(InputError, match=expected):
        open_feature_store(path).get("3MSZA")


def test_inf_clip_in_npy(tmp_path):
    clip_feats = _feats(3)
    clip_feats[1, 1] = np.inf
    np.save(tmp_path / "vid.npy", clip_feats)
    with pytest.raises(InputError, match=r"video 'vid' has inf in clip 1 \(of T=3\)"):
        open_feature_store(tmp_path).get("vid")


def test_unknown_id_suggests_close_ids(tmp_path):
    path = _write_h5(tmp_path / "f.h5", {"v_abc123": _feats(2), "v_xyz789": _feats(2), "zzz": _feats(2)})
    store = open_feature_store(path)
    with pytest.raises(InputError, match=r"no video 'abc123' among its 3 videos \(close ids: 'v_abc123'\)"):
        store.get("abc123")
    with pytest.raises(InputError, match=r"no close id; the first ids are 'v_abc123', 'v_xyz789', 'zzz'"):
        store.attrs("qqqqqqqqqq")


def test_wrong_rank(tmp_path):
    np.save(tmp_path / "vid.npy", np.zeros((3, 1, 4), dtype=np.float32))
    with pytest.raises(InputError, match=r"video 'vid' has shape \(3, 1, 4\) \(rank 3\), expected rank 2"):
        open_feature_store(tmp_path).get("vid")


def test_wrong_dim_against_expected_dim(tmp_path):
    path = _write_h5(tmp_path / "f.h5", {"vid": _feats(3, width=4)})
    with pytest.raises(InputError, match=r"video 'vid' has feature width D=4, but expected_dim gives D=1024"):
        open_feature_store(path, expected_dim=1024).get("vid")


def test_empty_video(tmp_path):
    path = _write_h5(tmp_path / "f.h5", {"vid": np.zeros((0, 4), dtype=np.float32)})
    with pytest.raises(InputError, match=r"video 'vid' has no clips \(shape \(0, 4\)\)"):
        open_feature_store(path).get("vid")


@pytest.mark.parametrize("video_id", ["../secret", "sub/vid", "/etc/passwd", "..", "a\\b"])
def test_folder_rejects_ids_that_escape(tmp_path, video_id):
    folder = tmp_path / "feats"
    folder.mkdir()
    np.save(folder / "vid.npy", _feats(2))
    np.save(tmp_path / "secret.npy", _feats(2))
    with pytest.raises(InputError, match="is not a plain file name"):
        FolderFeatureStore(folder).get(video_id)


def test_open_errors(tmp_path):
    with pytest.raises(InputError, match="no such feature file or folder"):
        open_feature_store(tmp_path / "missing.h5")
    (tmp_path / "notes.txt").write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5 file"):
        open_feature_store(tmp_path / "notes.txt")
    (tmp_path / "broken.h5").write_text("not hdf5 either")
    with pytest.raises(InputError, match="cannot be read as HDF5"):
        open_feature_store(tmp_path / "broken.h5")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no videos"):
        open_feature_store(empty)
    with pytest.raises(InputError, match="expected_dim must be a positive int"):
        open_feature_store(tmp_path / "broken.h5", expected_dim=0)


def test_hdf5_store_survives_pickling(tmp_path):
    path = _write_h5(tmp_path / "f.h5", {"vid": _feats(3)})
    store = HDF5FeatureStore(path)
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.get("vid"), store.get("vid"))
    clone.close()
    store.close()


def test_closed_store_refuses_reads(tmp_path):
    path = _write_h5(tmp_path / "f.h5", {"vid": _feats(3)})
    with HDF5FeatureStore(path) as store:
        assert store.get("vid").shape == (3, 4)
    with pytest.raises(GroundingError, match="the feature store was closed"):
        store.get("vid")


def test_compress_ranges():
    assert compress_ranges([40, 12, 13, 14]) == "12-14, 40"
    assert compress_ranges([3]) == "3"
    assert compress_ranges(range(0, 40, 2)).endswith(", ...")
