"""How long the real SmolLM2 takes to read a chat prompt, served by one or more `infergraph`
binaries in turn (say a commit's against the one before it): each binary serves the model
alone on 127.0.0.1, and user messages of growing length are sent to /v1/chat/completions
with `max_tokens: 1`, so the time is the prompt's prefill plus one step. The best of
`--repeats` per length, in seconds, with the prompt's token count.

    tests/fixtures/real/fetch-smollm2-135m-instruct.sh
    cargo build --release && cp target/release/infergraph /tmp/after
    python3 benches/chat_prefill.py /tmp/before /tmp/after [--dtype q4] [--repeats 2]
"""

import argparse
import json
import pathlib
import subprocess
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "target/real-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
PORT = 18951
WORDS = [2, 10, 30, 100, 400, 1600]


def post(body: dict) -> tuple[float, int]:
    started = time.perf_counter()
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORT}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    answer = json.load(urllib.request.urlopen(request))
    return time.perf_counter() - started, answer["usage"]["prompt_tokens"]


def serve(binary: str, dtype: str, config: pathlib.Path) -> subprocess.Popen:
    config.write_text(
        f'backend = "cpu"\n[server]\nhost = "127.0.0.1"\nport = {PORT}\n'
        "[limits]\nmax_input_tokens = 8184\nmax_input_chars = 100000\n"
        "request_timeout_ms = 600000\n"
        f'[[models]]\nname = "smollm2"\npath = "{MODEL}"\nrole = "generator"\n'
        f'dtype = "{dtype}"\n'
    )
    server = subprocess.Popen(
        [binary, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/readyz")
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"{binary} did not get ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("binaries", nargs="+")
    parser.add_argument("--dtype", default="q4")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for binary in args.binaries:
            server = serve(binary, args.dtype, pathlib.Path(scratch) / "config.toml")
            try:
                post({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]})
                row = []
                for words in WORDS:
                    text = " ".join(f"word{i}" for i in range(words))
                    body = {
                        "model": "smollm2",
                        "messages": [{"role": "user", "content": text}],
                        "max_tokens": 1,
                        "temperature": 0,
                    }
                    runs = [post(body) for _ in range(args.repeats)]
                    row.append(f"{runs[0][1]} tokens {min(t for t, _ in runs):.3f} s")
                print(f"{binary} ({args.dtype}): " + ", ".join(row), flush=True)
            finally:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    main()
