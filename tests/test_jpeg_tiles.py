"""The tiled-JPEG experiment's premise: grey tiles on 8-pixel edges decode to the whole image."""
import cv2
import numpy as np

from benchmarks.speed.jpeg_tiles import assemble, covering, edges, encode, tile


def test_tiles_decode_to_the_whole_images_pixels_and_cover_the_crop():
    assert edges(340, 4) == [0, 88, 168, 256, 340] and edges(256, 1) == [0, 256]
    rng = np.random.default_rng(0)
    # smooth content with noise, sizes that are not multiples of 8
    img = cv2.GaussianBlur(rng.integers(0, 256, (60, 85), np.uint8), (7, 7), 2)
    cols, rows = edges(85, 3), edges(60, 2)
    assert all(c % 8 == 0 for c in cols[:-1]) and all(r % 8 == 0 for r in rows[:-1])
    np.testing.assert_array_equal(assemble(tile(img, cols, rows), cols, rows),
                                  cv2.imdecode(encode(img), cv2.IMREAD_GRAYSCALE))
    # cols [0, 32, 56, 85], rows [0, 32, 60]: a box inside the middle column's top tile,
    # and one spanning everything
    assert cols == [0, 32, 56, 85] and rows == [0, 32, 60]
    assert covering(cols, rows, (0, 35, 20, 15)) == [1]
    assert covering(cols, rows, (20, 20, 30, 40)) == [0, 1, 2, 3, 4, 5]
    assert covering(cols, rows, (40, 60, 10, 10)) == [5]
