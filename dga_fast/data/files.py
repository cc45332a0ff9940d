"""Datasets read from the original files: Shapes3D, MPI3D-toy, Cars3D, CelebA, and any image folder.

Every dataset returns ``(image [3, S, S] float in [0, 1], label)`` items and a batched ``get_batch(idx)``;
the factor datasets also provide ``factor_names``, ``factor_sizes``, ``factors [N, F]`` (int),
``sample_factors(n, rng)`` and ``images_from_factors(f)`` (what the metrics need). A missing file raises
``FileNotFoundError`` naming the file and where to get it.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..np_random import draw_integers, numpy_rng

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _require(path: Path, what: str, where: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: expected {path}. {where}")
    return path


def _to_float_images(arr: np.ndarray, size: int) -> torch.Tensor:
    """uint8 ``[n, H, W, C]`` → float ``[n, 3, size, size]`` in [0, 1] (antialiased resize if needed)."""
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1)


class _FactorDataset(torch.utils.data.Dataset):
    """Common factor bookkeeping; subclasses set ``factor_names``, ``factor_sizes``, ``factors`` and
    implement ``_read(sorted_idx: np.ndarray) -> uint8 [n, H, W, C]``."""

    factor_names: tuple = ()
    factor_sizes: tuple = ()
    factors: np.ndarray

    def __init__(self, image_size: int):
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
        self.size = image_size

    def _index_table(self):
        flat = np.ravel_multi_index(self.factors.T, self.factor_sizes)
        table = np.full(int(np.prod(self.factor_sizes)), -1, dtype=np.int64)
        table[flat] = np.arange(len(self.factors))
        self._table = table

    def __len__(self) -> int:
        return len(self.factors)

    def get_batch(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(torch.as_tensor(idx).reshape(-1).cpu().numpy(), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"index out of range for {type(self).__name__} of length {len(self)}")
        order = np.argsort(idx, kind="stable")
        uniq, inv = np.unique(idx[order], return_inverse=True)
        imgs = self._read(uniq)[inv]
        out = np.empty_like(imgs)
        out[order] = imgs
        return _to_float_images(out, self.size), torch.from_numpy(self.factors[idx])

    def __getitem__(self, i):
        x, f = self.get_batch([int(i)])
        return x[0], f[0]

    def sample_factors(self, n: int, rng=None) -> np.ndarray:
        """``n`` rows' factors, rows drawn uniformly with replacement; ``rng`` as ``FactorGrid.sample_factors``."""
        return self.factors[draw_integers(numpy_rng(rng), len(self), n)]

    def images_from_factors(self, f) -> torch.Tensor:
        f = np.asarray(f, dtype=np.int64)
        if f.ndim != 2 or f.shape[1] != len(self.factor_sizes):
            raise ValueError(f"factors must have shape [n, {len(self.factor_sizes)}], got {f.shape}")
        if (f < 0).any() or (f >= np.array(self.factor_sizes)).any():
            raise ValueError(f"factor values out of range; sizes are {self.factor_sizes}")
        if not hasattr(self, "_table"):
            self._index_table()
        idx = self._table[np.ravel_multi_index(f.T, self.factor_sizes)]
        if (idx < 0).any():
            raise ValueError("some factor combinations are not in this dataset")
        return self.get_batch(idx)[0]


def _labels_to_indices(values: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Float factor values ``[N, F]`` → integer indices and the number of values of every factor."""
    cols, sizes = [], []
    for j in range(values.shape[1]):
        uniq, inv = np.unique(np.round(values[:, j], 6), return_inverse=True)
        cols.append(inv)
        sizes.append(len(uniq))
    return np.stack(cols, 1).astype(np.int64), tuple(sizes)


class Shapes3D(_FactorDataset):
    """DeepMind 3D Shapes: ``3dshapes.h5`` with ``images`` uint8 [480000, 64, 64, 3] and ``labels``
    [480000, 6] (floor hue, wall hue, object hue, scale, shape, orientation). Read lazily with h5py."""

    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    FILE = "3dshapes.h5"
    WHERE = "Download 3dshapes.h5 from the DeepMind 3D Shapes dataset (GitHub deepmind/3d-shapes)."

    def __init__(self, data_dir, image_size: int = 64):
        super().__init__(image_size)
        import h5py
        path = _require(Path(data_dir) / self.FILE, self.FILE, self.WHERE)
        try:
            self._h5 = h5py.File(path, "r")
            self._images = self._h5["images"]
            labels = self._h5["labels"][()]
        except (OSError, KeyError) as e:
            raise ValueError(f"{path} is not a valid 3dshapes.h5 (needs datasets 'images' and 'labels'): "
                             f"{e}") from None
        if self._images.ndim != 4 or labels.shape != (self._images.shape[0], 6):
            raise ValueError(f"{path}: expected images [N, H, W, 3] and labels [N, 6], got "
                             f"{self._images.shape} and {labels.shape}")
        self.factors, self.factor_sizes = _labels_to_indices(labels)

    def _read(self, idx: np.ndarray) -> np.ndarray:
        return self._images[idx]


class MPI3DToy(_FactorDataset):
    """MPI3D-toy: ``mpi3d_toy.npz`` with ``images`` uint8 [1036800, 64, 64, 3] in factor order (object
    color 6, object shape 6, object size 2, camera height 3, background color 3, horizontal axis 40,
    vertical axis 40). Memory-maps the array when the archive stores it uncompressed."""

    factor_names = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
                    "horizontal_axis", "vertical_axis")
    FULL_SIZES = (6, 6, 2, 3, 3, 40, 40)
    FILE = "mpi3d_toy.npz"
    WHERE = ("Download mpi3d_toy.npz from the MPI3D disentanglement dataset "
             "(GitHub rr-learning/disentanglement_dataset).")

    def __init__(self, data_dir, image_size: int = 64, factor_sizes=None):
        super().__init__(image_size)
        path = _require(Path(data_dir) / self.FILE, self.FILE, self.WHERE)
        self._images = _npz_member(path, "images")
        self.factor_sizes = tuple(factor_sizes or self.FULL_SIZES)
        n = int(np.prod(self.factor_sizes))
        if self._images.ndim != 4 or self._images.shape[0] != n:
            raise ValueError(f"{path}: images must be [{n}, H, W, 3] for factor sizes {self.factor_sizes}, "
                             f"got {self._images.shape}")
        self.factors = np.stack(np.unravel_index(np.arange(n), self.factor_sizes), 1).astype(np.int64)

    def _read(self, idx):
        return np.asarray(self._images[idx])


def _npz_member(path: Path, key: str) -> np.ndarray:
    """``key`` of an ``.npz``: memory-mapped if stored uncompressed, else loaded."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{key}.npy")
            if info.compress_type == zipfile.ZIP_STORED:
                with open(path, "rb") as f:
                    f.seek(info.header_offset)
                    local = f.read(30)
                    name_len = int.from_bytes(local[26:28], "little")
                    extra_len = int.from_bytes(local[28:30], "little")
                    start = info.header_offset + 30 + name_len + extra_len
                    f.seek(start)
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read_header(f)
                    offset = f.tell()
                return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                 order="F" if fortran else "C")
        with np.load(path, allow_pickle=False) as z:
            return z[key]
    except KeyError:
        raise ValueError(f"{path} has no array {key!r}") from None
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a valid .npz file: {e}") from None


class Cars3D(_FactorDataset):
    """Cars3D: a folder of ``*.mat`` files (one per car, sorted file order), key ``im`` holding
    [128, 128, 3, 24 azimuths, 4 elevations]. Factors: elevation 4, azimuth 24, car 183."""

    factor_names = ("elevation", "azimuth", "object")
    WHERE = "Download the Cars3D data (the *.mat files of Reed et al. 2015, 'Deep Visual Analogy-Making')."

    def __init__(self, data_dir, image_size: int = 64):
        super().__init__(image_size)
        from scipy.io import loadmat
        d = _require(Path(data_dir), "Cars3D folder", self.WHERE)
        files = sorted(p for p in d.glob("*.mat"))
        if not files:
            raise FileNotFoundError(f"no *.mat files in {d}. {self.WHERE}")
        per_car = []
        for f in files:
            try:
                im = loadmat(str(f))["im"]                                  # [H, W, 3, az, el]
            except Exception as e:  # noqa: BLE001 - scipy raises several types for bad files
                raise ValueError(f"{f} is not a readable Cars3D .mat file with key 'im': {e}") from None
            if im.ndim != 5 or im.shape[2] != 3:
                raise ValueError(f"{f}: 'im' must be [H, W, 3, azimuths, elevations], got {im.shape}")
            per_car.append(np.transpose(im, (4, 3, 0, 1, 2)))                # [el, az, H, W, 3]
        el, az = per_car[0].shape[:2]
        arr = np.stack(per_car, 2)                                             # [el, az, car, H, W, 3]
        self.factor_sizes = (el, az, len(files))
        self._images = arr.reshape((-1,) + arr.shape[3:])
        self.factors = np.stack(np.unravel_index(np.arange(len(self._images)), self.factor_sizes), 1).astype(np.int64)

    def _read(self, idx):
        return self._images[idx]


def _read_images(paths, size: int) -> torch.Tensor:
    from PIL import Image
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                w, h = im.size
                s = min(w, h)                                     # centre crop to a square
                im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                im = im.resize((size, size), Image.BILINEAR)
                out.append(np.asarray(im, dtype=np.uint8))
        except OSError as e:
            raise ValueError(f"cannot read image {p}: {e}") from None
    return _to_float_images(np.stack(out), size)


class ImageFolder(torch.utils.data.Dataset):
    """Every image file under ``data_dir`` (recursive, sorted), centre-cropped and resized; label = -1."""

    def __init__(self, data_dir, image_size: int = 64):
        d = _require(Path(data_dir), "image folder", "Pass --data-dir pointing to a folder of images.")
        self.paths = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        if not self.paths:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTS)}) found under {d}")
        self.size = image_size

    def __len__(self):
        return len(self.paths)

    def get_batch(self, idx):
        idx = torch.as_tensor(idx).reshape(-1).tolist()
        return _read_images([self.paths[i] for i in idx], self.size), torch.full((len(idx),), -1)

    def __getitem__(self, i):
        x, y = self.get_batch([int(i)])
        return x[0], y[0]


class CelebA(ImageFolder):
    """CelebA: ``img_align_celeba/`` (the aligned JPEGs) and ``list_attr_celeba.txt`` in ``data_dir``;
    items carry the 40 binary attributes (``attributes [N, 40]`` bool, ``attribute_names``)."""

    WHERE = "Download CelebA (img_align_celeba/ and list_attr_celeba.txt) from the CelebA dataset page."

    def __init__(self, data_dir, image_size: int = 64):
        d = Path(data_dir)
        attr = _require(d / "list_attr_celeba.txt", "list_attr_celeba.txt", self.WHERE)
        img_dir = _require(d / "img_align_celeba", "img_align_celeba/", self.WHERE)
        lines = attr.read_text().splitlines()
        try:
            self.attribute_names = tuple(lines[1].split())
            rows = [ln.split() for ln in lines[2:] if ln.strip()]
            names = [r[0] for r in rows]
            vals = np.array([[int(v) for v in r[1:]] for r in rows], dtype=np.int64)
        except (IndexError, ValueError) as e:
            raise ValueError(f"{attr} is not in the list_attr_celeba.txt format: {e}") from None
        if vals.shape[1:] != (len(self.attribute_names),):
            raise ValueError(f"{attr}: {vals.shape[1]} values per row for {len(self.attribute_names)} attributes")
        self.paths = [img_dir / n for n in names]
        missing = [p for p in self.paths[:1] + self.paths[-1:] if not p.exists()]
        if missing:
            raise FileNotFoundError(f"image listed in {attr.name} not found: {missing[0]}. {self.WHERE}")
        self.attributes = vals > 0
        self.size = image_size

    def get_batch(self, idx):
        idx = torch.as_tensor(idx).reshape(-1).tolist()
        return _read_images([self.paths[i] for i in idx], self.size), torch.from_numpy(self.attributes[idx])
