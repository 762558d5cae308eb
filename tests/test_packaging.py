"""The distributions as a user gets them: `python -m build` makes a wheel and an
sdist that `twine check` accepts; a clean venv holding only the wheel with
[postgres,cli] (and langgraph, which the quick start's graph is built with)
runs the README quick start on the local Redis and PostgreSQL, and the
console script: `--help` works, `demo` and `bench` (modules of the source
repository, not of the wheel) say how to get a checkout, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT, schema_url

pytestmark = pytest.mark.timeout(900)

QUICK_START = textwrap.dedent(
    """
    import asyncio
    import sys
    from typing import Annotated, TypedDict

    import langgraph_hybrid_saver
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages
    from langgraph_hybrid_saver import AsyncHybridSaver


    class State(TypedDict):
        messages: Annotated[list, add_messages]


    def reply(state: State) -> dict:
        return {"messages": [("ai", "hello from the wheel")]}


    builder = StateGraph(State)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)


    async def main(redis_url: str, durable_url: str, prefix: str) -> None:
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=prefix
        ) as saver:  # creates the schema (idempotent)
            graph = builder.compile(checkpointer=saver)
            config = {"configurable": {"thread_id": "case_8842"}}
            await graph.ainvoke({"messages": [("user", "hi")]}, config)
            await saver.aflush()  # optional: wait for the durable store
            state = await graph.aget_state(config)
            print("messages:", [m.content for m in state.values["messages"]])
        print("module:", langgraph_hybrid_saver.__file__)


    asyncio.run(main(*sys.argv[1:]))
    """
)


def _run(cmd: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        [str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kwargs
    )


def _clean_env() -> dict[str, str]:
    """This process's environment without its venv or import path."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=ROOT)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def wheel_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean venv (no system site-packages) with the wheel[postgres,cli]."""
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    made = _run([sys.executable, "-m", "venv", venv], env=_clean_env())
    assert made.returncode == 0, made.stderr
    (wheel,) = dist.glob("*.whl")
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip", "install", "-q"]
    installed = _run([*pip, f"{wheel}[postgres,cli]", "langgraph"], env=_clean_env())
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    yield venv


def test_wheel_and_sdist_pass_twine_check(dist: Path) -> None:
    wheels: list[str | Path] = list(dist.glob("*.whl"))
    sdists: list[str | Path] = list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    checked = _run([sys.executable, "-m", "twine", "check", "--strict", *wheels, *sdists])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout


def test_wheel_holds_the_package_only(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"langgraph_hybrid_saver"}
    assert "langgraph_hybrid_saver/py.typed" in names
    for module in ("cli/__init__.py", "__main__.py", "backends/postgres/backend.py", "reducers.py"):
        assert f"langgraph_hybrid_saver/{module}" in names, module
    # data files next to the code (e.g. Lua scripts) are shipped with it
    source = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "langgraph_hybrid_saver").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert source <= set(names), sorted(source - set(names))
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Dist: langgraph-checkpoint<5,>=4.3" in text
    entry_points = metadata.replace("METADATA", "entry_points.txt")
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "langgraph-hybrid-saver = langgraph_hybrid_saver.cli:main" in scripts


def test_readme_quick_start_from_the_wheel(
    wheel_venv: Path, redis_url: str, pg_admin_url: str, tmp_path: Path
) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        script = tmp_path / "quick_start.py"
        script.write_text(QUICK_START)
        prefix = f"t{uuid.uuid4().hex[:12]}"
        ran = _run(
            [wheel_venv / "bin" / "python", script, redis_url,
             schema_url(pg_admin_url, schema), prefix],
            cwd=tmp_path, env=_clean_env(),
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "messages: ['hi', 'hello from the wheel']" in ran.stdout
        module = ran.stdout.split("module:", 1)[1].strip()
        assert module.startswith(str(wheel_venv)) and "site-packages" in module, module
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            cur = conn.execute(f"SELECT count(*) FROM {schema}.checkpoints")
            assert (row := cur.fetchone()) is not None and row[0] >= 2  # durable
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_console_script_from_the_wheel(wheel_venv: Path, tmp_path: Path) -> None:
    cli = wheel_venv / "bin" / "langgraph-hybrid-saver"
    helped = _run([cli, "--help"], cwd=tmp_path, env=_clean_env())
    assert helped.returncode == 0, helped.stderr
    for command in ("setup", "status", "inspect", "size", "reconcile", "demo", "bench"):
        assert command in helped.stdout, command
    for command, extra in (("demo", "example"), ("bench", "bench")):
        launched = _run([cli, command], cwd=tmp_path, env=_clean_env())
        err = launched.stderr
        assert launched.returncode == 2, (command, launched.stdout, err)
        assert "Traceback" not in err and err.strip().count("\n") == 0, err
        assert "not available" in err and "source repository" in err, err
        assert "git clone " in err and f'pip install -e ".[{extra}]"' in err, err
        assert f"langgraph-hybrid-saver {command}" in err, err
