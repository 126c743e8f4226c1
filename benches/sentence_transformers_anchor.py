"""The anchor for the embedder benchmark: sentence-transformers (torch, 2 threads) on the
real all-MiniLM-L6-v2 folder and the same texts as `cargo bench --bench models`
(benches/embed_sentences.txt), embeddings/s at batch 1 and 32, medians after a warm-up.

    pip install sentence-transformers   # with torch
    tests/fixtures/real/fetch-all-minilm-l6-v2.sh
    python3 benches/sentence_transformers_anchor.py [--repeats 10]
"""

import argparse
import pathlib
import statistics
import time

import torch
from sentence_transformers import SentenceTransformer

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    sentences = (ROOT / "benches/embed_sentences.txt").read_text().splitlines()
    model = SentenceTransformer(
        str(ROOT / "target/real-models/all-minilm-l6-v2"), device="cpu"
    )
    print(f"sentence-transformers, torch {torch.__version__}, 2 threads, median of {args.repeats}")
    for batch in (1, 32):
        texts = [sentences[i % len(sentences)] for i in range(batch)]
        model.encode(texts, batch_size=batch)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.encode(texts, batch_size=batch)
            times.append(time.perf_counter() - start)
        t = statistics.median(times)
        print(f"| all-MiniLM-L6-v2 sentence-transformers | embed, batch {batch} | {t * 1e3:.1f} ms | {batch / t:.0f} embeddings/s |")


if __name__ == "__main__":
    main()
