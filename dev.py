#!/usr/bin/env python3
"""The two commands a newcomer needs, with nothing but Python 3.11 installed.

    python3 dev.py run    # virtualenv, install, migrate, demo data, fake OpenAI, API on :8000
    python3 dev.py test   # virtualenv, install, the whole test suite (args go to pytest)

Standard library only: this file runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
ENV_FILE = ROOT / ".env"

API_HOST, API_PORT = "127.0.0.1", int(os.environ.get("MEGAHUB_PORT", "8000"))
FAKE_PORT = int(os.environ.get("FAKE_OPENAI_PORT", "8787"))


def log(message: str) -> None:
    print(f"[megahub] {message}", flush=True)


def ensure_venv(requirements: str) -> None:
    """Create .venv and install ``requirements`` unless they are installed already."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 is
        sys.exit("MEGAHUB needs Python 3.11 or newer.")
    if not PYTHON.exists():
        log(f"creating virtualenv in {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    req_files = [ROOT / requirements, ROOT / "requirements.txt"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in req_files)).hexdigest()
    stamp = VENV / f".installed-{requirements}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    log(f"installing {requirements} (first run takes a minute)")
    subprocess.run(
        [
            str(PYTHON),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(ROOT / requirements),
        ],
        check=True,
    )
    stamp.write_text(digest)


def ensure_env_file() -> dict[str, str]:
    """Write a .env with generated secrets for the local demo (kept across runs)."""
    values: dict[str, str] = {}
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    defaults = {
        "DEBUG": "true",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "JWT_SIGNING_KEY": secrets.token_urlsafe(50),
        "AI_ENCRYPTION_KEY": _fernet_key(),
        "DEMO_PASSWORD": secrets.token_urlsafe(12),
    }
    missing = {k: v for k, v in defaults.items() if k not in values}
    if missing:
        with ENV_FILE.open("a") as fh:
            if not values:
                fh.write("# Local demo settings written by `python3 dev.py run`.\n")
            for key, value in missing.items():
                fh.write(f"{key}={value}\n")
        values.update(missing)
    # Where this run starts the fake server (FAKE_OPENAI_PORT), not where an earlier run
    # did: a .env written before may still name another port.
    values["FAKE_OPENAI_URL"] = f"http://127.0.0.1:{FAKE_PORT}/v1"
    return values


def _fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def manage(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(PYTHON), "manage.py", *args], cwd=ROOT, check=True, env=env)


def wait_for_http(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - a local URL
                return True
        except OSError:
            time.sleep(0.2)
    return False


def password_arg(password: str) -> str:
    """``--password=…`` in one argument: a generated password may start with "-"
    (token_urlsafe), which argparse would take for an option after a separate
    ``--password``."""
    return f"--password={password}"


def cmd_run() -> int:
    ensure_venv("requirements.txt")
    values = ensure_env_file()
    env = {**os.environ, **values}
    manage("migrate", "--noinput", env=env)
    fake_cmd = ROOT / "ai_core" / "management" / "commands" / "run_fake_openai.py"
    children: list[subprocess.Popen[bytes]] = []
    if fake_cmd.exists():
        log(f"starting the bundled fake OpenAI server on 127.0.0.1:{FAKE_PORT}")
        children.append(
            subprocess.Popen(
                [str(PYTHON), "manage.py", "run_fake_openai", "--port", str(FAKE_PORT)],
                cwd=ROOT,
                env=env,
            )
        )
    setup = ROOT / "ai_openai" / "management" / "commands" / "setup_demo.py"
    if setup.exists():
        manage("setup_demo", password_arg(values["DEMO_PASSWORD"]), env=env)
    else:
        manage(
            "create_brand",
            "demo",
            "--name",
            "Demo brand",
            "--user",
            "demo",
            password_arg(values["DEMO_PASSWORD"]),
            "--role",
            "admin",
            env=env,
        )
    log(f"starting the API on http://{API_HOST}:{API_PORT}")
    server = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "megahub.wsgi:application",
            "--config",
            "gunicorn.conf.py",
            "--bind",
            f"{API_HOST}:{API_PORT}",
        ],
        cwd=ROOT,
        env=env,
    )
    children.append(server)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `kill <pid>` stops the children too, as Ctrl-C does

    signal.signal(signal.SIGTERM, stop)
    try:
        if wait_for_http(f"http://{API_HOST}:{API_PORT}/health"):
            print(
                "\n"
                f"  MEGAHUB is running on http://{API_HOST}:{API_PORT}\n"
                f"  API docs:        http://{API_HOST}:{API_PORT}/api/docs/\n"
                f"  Admin:           http://{API_HOST}:{API_PORT}/admin/\n"
                f"  Demo brand:      demo\n"
                f"  Demo user:       demo\n"
                f"  Demo password:   {values['DEMO_PASSWORD']}\n"
                f"  Fake OpenAI:     {values['FAKE_OPENAI_URL']}\n"
                "\n"
                f"  Get a token:  curl -s -X POST http://{API_HOST}:{API_PORT}/api/auth/token/ "
                "-H 'Content-Type: application/json' "
                f'-d \'{{"username": "demo", "password": "{values["DEMO_PASSWORD"]}"}}\'\n'
                "  Stop with Ctrl-C.\n",
                flush=True,
            )
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


def cmd_test(args: list[str]) -> int:
    ensure_venv("requirements-dev.txt")
    return subprocess.run([str(BIN / "pytest"), *args], cwd=ROOT).returncode


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "test"}:
        print(__doc__)
        return 2
    if sys.argv[1] == "run":
        return cmd_run()
    return cmd_test(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
