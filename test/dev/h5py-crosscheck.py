"""Dev-only: reads <out>/<image_id>.h5 with h5py and compares with the TFRecords' values (see h5py-crosscheck.ts)."""
import hashlib, json, sys
import h5py, numpy as np

out, expected = sys.argv[1], json.load(open(sys.argv[2]))
bad = 0
for image_id, e in sorted(expected.items()):
    with h5py.File(f"{out}/{image_id}.h5", "r") as f:
        feats, coords = f["features"], f["coords"]
        got = {
            "n": feats.shape[0], "dim": feats.shape[1],
            "features_avg": hashlib.sha256(np.asarray(f["features_avg"], "<f4").tobytes()).hexdigest(),
            "features_max": hashlib.sha256(np.asarray(f["features_max"], "<f4").tobytes()).hexdigest(),
            "coords": hashlib.sha256(np.asarray(coords, "<i8").tobytes()).hexdigest(),
        }
        same = got == e and np.array_equal(f["features"], f["features_avg"]) and feats.dtype == np.float32 and coords.dtype == np.int64
        bad += not same
        print(image_id, "ok" if same else f"MISMATCH {got} vs {e}", dict(feats=feats.shape, coords=coords.shape, patch_size=int(coords.attrs["patch_size"]), encoder=f.attrs["encoder"]))
print(f"h5py {h5py.version.version} (HDF5 {h5py.version.hdf5_version}): {len(expected) - bad} of {len(expected)} slides match")
sys.exit(1 if bad else 0)
