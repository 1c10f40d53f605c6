"""How well two characters can be told apart under the generator's distortions, and
how many examples of them that takes: a small CNN trained on isolated glyphs of the
pair, drawn the way `generate` draws them (params.yaml's generate section and font),
at the model's input scale, once per training budget; each glyph is seen once.

    python bench/glyph_separability.py --pair 0O --budgets 75000 300000 600000
    python bench/glyph_separability.py --pair 0O --budgets 75000 300000 --noise

Isolated glyphs on a plain background (no neighbours, noise dots or curves) make
the task easier than reading them in a captcha, so the accuracies are an upper
bound for a reader that sees as many of those glyphs. With --noise, the part of
a captcha's noise layer (its dots and curves) that falls where the glyph sits is
drawn over it and the captcha's final smoothing applied, which leaves out only
the neighbours. Compare a budget with what
training shows the pair: the default's 80,000 captchas x 4 epochs x 4 characters
x 2/36 is ~71,000 glyphs of 0 or O. Writes bench/results/glyph_separability.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image, ImageDraw
from results_json import record

RESULTS = Path(__file__).parent / "results"
CHUNK = 5000  # glyphs per worker task; each task has its own seeded stream


def draw_glyphs(task: tuple[Path, str, int, int, bool]) -> tuple[np.ndarray, np.ndarray]:
    """`count` glyphs of the pair at the model's input scale (square, as many columns
    as rows), with their class: the index of the character in the pair; with `noise`,
    the captcha's noise dots and curves cross them as they would in a captcha."""
    import captcha.image

    from captcha_ocr.fonts import resolve_all
    from captcha_ocr.generate import TunedCaptcha, _captcha_randomness
    from captcha_ocr.params import load_params

    params_path, pair, seed, count, noise = task
    params = load_params(params_path)
    gen = params.generate
    # The first font of the list: one font's pair is the question.
    font = resolve_all(gen.fonts[:1], params.data.symbols, params_path.parent)[0]
    drawer = TunedCaptcha(gen, font)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # A glyph's tile is as wide as the font's box for it, whatever the distortion, so
    # the other characters' widths (which decide the squeeze) are looked up, not drawn.
    box_widths = {
        c: [int(draw.multiline_textbbox((1, 1), c, font=sized)[2]) for sized in drawer.truefonts]
        for c in params.data.symbols + " "
    }
    size = params.model.input_height or gen.image_height
    # The model resizes whole images: rows by input_height / image_height, columns
    # by input_width / image_width, after the captcha's own squeeze.
    scale_x = (params.model.input_width or gen.image_width) / gen.image_width
    rng = random.Random(seed)
    glyphs = np.zeros((count, size, size), np.uint8)
    labels = np.zeros(count, np.uint8)
    with _captcha_randomness(rng):
        for index in range(count):
            labels[index] = rng.randrange(2)
            glyph, text_width, color = glyph_in_a_captcha(
                drawer, draw, box_widths, params, pair[labels[index]], rng
            )
            # create_captcha_image squeezes text wider than the image to its width.
            squeeze = gen.image_width / max(text_width, gen.image_width)
            background_rgb = captcha.image.random_color(238, 255)
            background = sum(background_rgb) // 3
            canvas = Image.new("L", (glyph.width, gen.image_height), background)
            mask = glyph.convert("L").point(drawer.lookup_table)
            canvas.paste(glyph.convert("L"), (0, (gen.image_height - glyph.height) // 2), mask)
            if noise:
                canvas = with_captcha_noise(
                    drawer, canvas, squeeze, background_rgb, color, gen, rng
                )
                squeeze = 1.0  # the canvas is at the captcha's own scale now
            width = max(1, round(canvas.width * squeeze * scale_x))
            pixels = np.asarray(canvas.resize((width, size), Image.Resampling.BILINEAR))
            pixels = pixels[:, :size]
            left = (size - pixels.shape[1]) // 2
            glyphs[index] = background
            glyphs[index, :, left : left + pixels.shape[1]] = pixels
    return glyphs, labels


def glyph_in_a_captcha(drawer, draw, box_widths, params, char: str, rng: random.Random):
    """`char` drawn as create_captcha_image draws it, and the width of a whole
    captcha's text around it (its random gaps included), which decides the squeeze."""
    import captcha.image

    gen = params.generate
    color = captcha.image.random_color(10, 200, captcha.image.secrets.randbelow(36) + 220)
    length = rng.randint(gen.min_length, gen.max_length)
    text_width = 0
    for c in [rng.choice(params.data.symbols) for _ in range(length - 1)] + [" "] * length:
        if c != " " or rng.random() > drawer.word_space_probability:
            text_width += rng.choice(box_widths[c])
    glyph = drawer._draw_character(char, draw, color)
    return glyph, text_width + glyph.width, color


def with_captcha_noise(drawer, canvas, squeeze, background_rgb, color, gen, rng):
    """The glyph's canvas squeezed to the captcha's scale, with the part of a whole
    captcha's noise layer (dots and curves, drawn as generate_image draws them) that
    falls on a glyph-wide window, then the captcha's final smoothing."""
    from PIL import ImageFilter

    tile = canvas.resize(
        (max(1, round(canvas.width * squeeze)), canvas.height), Image.Resampling.BILINEAR
    )
    layer = Image.new("RGB", (gen.image_width, gen.image_height), background_rgb)
    if gen.noise_dots:
        drawer.create_noise_dots(layer, color, width=gen.noise_dot_width, number=gen.noise_dots)
    for _ in range(gen.noise_curves):
        drawer.create_noise_curve(layer, color)
    left = rng.randrange(max(1, gen.image_width - tile.width + 1))
    window = layer.crop((left, 0, left + tile.width, gen.image_height))
    drawn = (np.asarray(window) != np.asarray(background_rgb, np.uint8)).any(axis=-1)
    pixels = np.where(drawn, np.asarray(window.convert("L")), np.asarray(tile))
    return Image.fromarray(pixels.astype(np.uint8)).filter(ImageFilter.SMOOTH)


def make_glyphs(params: Path, pair: str, count: int, seed: int, workers: int, noise: bool):
    tasks = [
        (params, pair, seed * 1_000_003 + chunk, min(CHUNK, count - chunk * CHUNK), noise)
        for chunk in range(-(-count // CHUNK))
    ]
    with Pool(workers) as pool:
        parts = pool.map(draw_glyphs, tasks)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def build_classifier(size: int, filters: list[int], convs_per_block: int):
    """Blocks of 3x3 convs + BatchNorm + max-pool, global pooling, 2 logits."""
    import keras
    from keras import layers

    stack = [keras.Input((size, size, 1))]
    for block_filters in filters:
        for _ in range(convs_per_block):
            stack += [
                layers.Conv2D(block_filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(),
                layers.ReLU(),
            ]
        stack.append(layers.MaxPool2D())
    stack += [layers.GlobalAveragePooling2D(), layers.Dense(2)]
    return keras.Sequential(stack)


def conv_flops(size: int, filters: list[int], convs_per_block: int) -> int:
    """Multiply-adds x 2 of the 3x3 convs for one size x size glyph."""
    flops, channels = 0, 1
    for block_filters in filters:
        for _ in range(convs_per_block):
            flops += 2 * 9 * channels * block_filters * size * size
            channels = block_filters
        size //= 2
    return flops


def train_and_test(train_x, train_y, test_x, test_y, args) -> dict[str, float]:
    import keras

    keras.utils.set_random_seed(1)
    model = build_classifier(train_x.shape[1], args.filters, args.convs_per_block)
    steps = len(train_y) // args.batch_size
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=2e-3, warmup_steps=max(1, steps // 20)
    )
    model.compile(
        keras.optimizers.Adam(schedule),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(train_x, train_y, batch_size=args.batch_size, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    # As many pixels as 10,000 glyphs of 32x32: the activations of 10,000 glyphs of
    # 60x60 outgrew memory (the process died).
    count = max(1_000, 10_000 * 32 * 32 // (train_x.shape[1] * train_x.shape[2]))
    recalibrate_batch_norm(model, train_x[-count:])
    logits = model.predict(test_x, batch_size=1024, verbose=0)
    return {
        "test_accuracy": round(float(np.mean(np.argmax(logits, 1) == test_y)), 4),
        "train_seconds": round(seconds, 1),
    }


def recalibrate_batch_norm(model, images) -> None:
    """Re-estimate BatchNorm's moving statistics from training images with the final
    weights, in one batch: the running averages kept during one short epoch still carry
    the early weights' statistics (held-out accuracy read 0.76 instead of 0.98 without
    this)."""
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # the batch's statistics replace the running ones
    model(images, training=True)
    for layer in norms:
        layer.momentum = 0.99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--pair", default="0O", help="the two characters")
    parser.add_argument("--budgets", type=int, nargs="+", default=[75_000, 300_000, 600_000])
    parser.add_argument("--test", type=int, default=20_000, help="held-out glyphs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--filters", type=int, nargs="+", default=[32, 64, 128], help="per block")
    parser.add_argument("--convs-per-block", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--noise", action="store_true", help="cross the glyphs with the captcha's noise"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "glyph_separability.json")
    args = parser.parse_args(argv)
    if len(args.pair) != 2 or args.pair[0] == args.pair[1]:
        parser.error("--pair: two different characters, e.g. 0O")

    params = args.params.resolve()
    start = time.perf_counter()
    train_x, train_y = make_glyphs(
        params, args.pair, max(args.budgets), seed=1, workers=args.workers, noise=args.noise
    )
    test_x, test_y = make_glyphs(
        params, args.pair, args.test, seed=2, workers=args.workers, noise=args.noise
    )
    drawn = time.perf_counter() - start
    print(f"{len(train_y) + len(test_y)} glyphs drawn in {drawn:.1f} s", flush=True)
    train_x = train_x[..., None].astype("float32") / 255
    test_x = test_x[..., None].astype("float32") / 255

    runs = []
    for budget in sorted(args.budgets):
        run = {"train_glyphs": budget} | train_and_test(
            train_x[:budget], train_y[:budget], test_x, test_y, args
        )
        print(json.dumps(run), flush=True)
        runs.append(run)

    from captcha_ocr.params import load_params

    loaded = load_params(params)
    size = int(train_x.shape[1])
    filters = "-".join(map(str, args.filters))
    result = {
        "pair": args.pair,
        "font": loaded.generate.fonts[0],
        "glyph_size": size,
        "noise": args.noise,
        "test_glyphs": args.test,
        "glyphs_per_second_drawn": round((len(train_y) + len(test_y)) / drawn),
        "classifier": f"{len(args.filters)} blocks of {args.convs_per_block} conv3x3 "
        f"({filters}) + BN, GAP, 2 logits; Adam 2e-3 cosine, "
        f"batch {args.batch_size}, one pass over fresh glyphs",
        "forward_mflops_per_glyph": round(
            conv_flops(size, args.filters, args.convs_per_block) / 1e6, 1
        ),
        "runs": runs,
    }
    name = f"{args.pair}_{loaded.generate.fonts[0]}_{size}_{filters}_x{args.convs_per_block}"
    if args.noise:
        name += "_noise"
    record(args.out, name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
