"""Write scikit-learn's bundled handwritten digits (1,797 real 8x8 images, shipped inside the
scikit-learn package, no download) as an ImageFolder tree that `archspec train --data` reads:

    python scripts/digits_imagefolder.py data/digits     # data/digits/{train,val}/{0..9}/*.png

An 80/20 split, stratified by class and fixed by its seed: 1,437 training and 360 validation images.
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_digits(root: Path, seed: int = 0) -> tuple[int, int]:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    splits = train_test_split(digits.images, digits.target, test_size=0.2, random_state=seed, stratify=digits.target)
    train_x, val_x, train_y, val_y = splits
    for split, images, labels in (("train", train_x, train_y), ("val", val_x, val_y)):
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            # pixel values 0..16 in the data set, stretched to 0..255
            Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return len(train_y), len(val_y)


if __name__ == "__main__":
    train, val = write_digits(Path(sys.argv[1]))
    print(f"wrote {train} training and {val} validation images to {sys.argv[1]}")
