"""Writes real photographs shipped inside scikit-image as PNG for tests/face_score_photos.rs:
`astronaut.png` (Eileen Collins, one face), `coffee.png` (a cup of coffee, no face),
`astronaut_64.png` (the face cropped and shrunk to 64x64, the size of generated faces) and
`rocket.png` (a rocket launch, no face).

usage: python face_score_photos.py DIR
"""
import sys

import numpy as np
from PIL import Image
import skimage.data as data

out = sys.argv[1]
astronaut = data.astronaut()
Image.fromarray(astronaut).save(f"{out}/astronaut.png")
Image.fromarray(data.coffee()).save(f"{out}/coffee.png")
Image.fromarray(data.rocket()).save(f"{out}/rocket.png")
# The face is at about rows 30..250, columns 130..320 of the 512x512 photo.
face = Image.fromarray(np.ascontiguousarray(astronaut[20:260, 110:350])).resize((64, 64), Image.BILINEAR)
face.save(f"{out}/astronaut_64.png")
