"""File loaders on tiny files written in each original format."""
import numpy as np
import pytest
import torch

from dga_fast.data import Cars3D, CelebA, ImageFolder, MPI3DToy, Shapes3D


def test_shapes3d(tmp_path):
    import h5py
    rng = np.random.default_rng(0)
    n = 24
    labels = np.stack([rng.choice([0.0, 0.1, 0.2], n), rng.choice([0.0, 0.5], n), np.zeros(n),
                       rng.choice([0.75, 1.25], n), rng.choice([0.0, 1.0, 2.0, 3.0], n),
                       rng.choice([-30.0, 30.0], n)], 1)
    images = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "3dshapes.h5", "w") as f:
        f["images"], f["labels"] = images, labels
    ds = Shapes3D(tmp_path, image_size=64)
    assert len(ds) == n and ds.factor_sizes == (3, 2, 1, 2, 4, 2)
    x, fac = ds.get_batch([5, 2, 5])
    assert x.shape == (3, 3, 64, 64)
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy() * 255, images[5], atol=1e-3)
    torch.testing.assert_close(x[0], x[2])
    assert fac.shape == (3, 6)
    small = Shapes3D(tmp_path, image_size=32)[0][0]
    assert small.shape == (3, 32, 32)
    with pytest.raises(FileNotFoundError, match="3dshapes.h5"):
        Shapes3D(tmp_path / "missing")


def test_mpi3d_toy_memory_mapped_and_compressed(tmp_path):
    sizes = (2, 1, 2, 1, 1, 3, 2)
    n = int(np.prod(sizes))
    images = np.random.default_rng(1).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    for save in (np.savez, np.savez_compressed):
        save(tmp_path / "mpi3d_toy.npz", images=images)
        ds = MPI3DToy(tmp_path, image_size=8, factor_sizes=sizes)
        assert len(ds) == n
        assert isinstance(ds._images, np.memmap) == (save is np.savez)   # uncompressed: memory-mapped
        x, f = ds.get_batch([n - 1])
        np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy() * 255, images[n - 1], atol=1e-3)
        assert f[0].tolist() == [s - 1 for s in sizes]
        torch.testing.assert_close(ds.images_from_factors(f.numpy()), x)
    with pytest.raises(ValueError, match="images must be"):
        MPI3DToy(tmp_path, image_size=8)          # the full factor grid does not fit this file
    with pytest.raises(FileNotFoundError, match="mpi3d_toy.npz"):
        MPI3DToy(tmp_path / "nope")


def test_cars3d(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(2)
    ims = [rng.integers(0, 256, (16, 16, 3, 3, 2), dtype=np.uint8) for _ in range(2)]
    for i, im in enumerate(ims):
        savemat(tmp_path / f"car_{i:03d}.mat", {"im": im})
    ds = Cars3D(tmp_path, image_size=16)
    assert ds.factor_sizes == (2, 3, 2) and len(ds) == 12
    x = ds.images_from_factors([[1, 2, 1]])           # elevation 1, azimuth 2, car 1
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy() * 255, ims[1][:, :, :, 2, 1], atol=1e-3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"\*.mat"):
        Cars3D(empty)


def test_celeba_and_image_folder(tmp_path):
    from PIL import Image
    d = tmp_path / "img_align_celeba"
    d.mkdir()
    names = ["000001.jpg", "000002.jpg", "000003.jpg"]
    for i, n in enumerate(names):
        Image.fromarray(np.full((30, 20, 3), 80 * i, dtype=np.uint8)).save(d / n)
    (tmp_path / "list_attr_celeba.txt").write_text(
        "3\nSmiling Young\n" + "".join(f"{n} {1 if i else -1} 1\n" for i, n in enumerate(names)))
    ds = CelebA(tmp_path, image_size=16)
    x, a = ds.get_batch([0, 2])
    assert x.shape == (2, 3, 16, 16) and ds.attribute_names == ("Smiling", "Young")
    assert a.tolist() == [[False, True], [True, True]]
    assert abs(float(x[1].mean()) - 160 / 255) < 0.02
    folder = ImageFolder(d, image_size=8)
    assert len(folder) == 3 and folder[1][0].shape == (3, 8, 8)
    (tmp_path / "list_attr_celeba.txt").unlink()
    with pytest.raises(FileNotFoundError, match="list_attr_celeba.txt"):
        CelebA(tmp_path)
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolder(no_images)
