"""The embedded PostgreSQL: each test starts its own server under tmp_path (not the session one)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from gcos.embedded import EmbeddedServer
from gcos.errors import DatabaseUnavailable, ExitCode


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    srv = EmbeddedServer(tmp_path / "home")
    try:
        yield srv
    finally:
        srv.down()


def select_one(url: str) -> int:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


def write_stale_pid_file(srv: EmbeddedServer, pid: int) -> None:
    """A postmaster.pid (and socket lock) as a crashed server or a reboot would leave them."""
    lines = [str(pid), str(srv.data_dir), "1700000000", "5432", str(srv.socket_dir), "", "  0 0", "ready"]
    (srv.data_dir / "postmaster.pid").write_text("\n".join(lines) + "\n")
    srv.socket_dir.mkdir(parents=True, exist_ok=True)
    (srv.socket_dir / ".s.PGSQL.5432.lock").write_text(f"{pid}\n{srv.data_dir}\n")


@pytest.mark.slow  # starts and stops a server of its own
def test_up_twice_is_idempotent_and_url_connects(server: EmbeddedServer) -> None:
    before = server.status()
    assert not before.running and before.pid is None and before.url is None and before.version is None

    first = server.up()
    second = server.up()

    assert first.running and second.running
    assert first.pid == second.pid == server.status().pid
    assert first.version and first.version.split(".")[0].isdigit()
    assert first.data_dir == server.data_dir and (first.data_dir / "PG_VERSION").is_file()
    assert first.socket_dir == server.socket_dir and first.socket_dir.is_relative_to(server.root)
    assert first.log_file == server.root / "postgres.log" and first.log_file.is_file()
    assert first.url == server.url()
    assert select_one(server.url()) == 1


@pytest.mark.slow  # starts and stops a server of its own
def test_server_is_socket_only_with_small_machine_settings(server: EmbeddedServer) -> None:
    server.up()
    with psycopg.connect(server.url(), autocommit=True) as conn:
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'max_connections', 'fsync', 'unix_socket_directories')"
            ).fetchall()
        )
    assert settings == {
        "listen_addresses": "",
        "max_connections": "100",
        "fsync": "on",
        "unix_socket_directories": str(server.socket_dir),
    }


def test_down_on_a_fresh_home_creates_nothing(tmp_path: Path) -> None:
    assert not EmbeddedServer(tmp_path).down().running
    assert not (tmp_path / ".gcos").exists()


def test_url_names_the_database_and_the_socket_dir(tmp_path: Path) -> None:
    srv = EmbeddedServer(tmp_path)
    params = conninfo_to_dict(srv.url("my db"))
    assert params["dbname"] == "my db"
    assert params["host"] == str(srv.socket_dir)
    assert params["user"] == "postgres" and "password" not in params


@pytest.mark.slow  # starts and stops a server of its own
def test_server_outlives_the_process_that_started_it(server: EmbeddedServer) -> None:
    code = "import sys; from pathlib import Path; from gcos.embedded import EmbeddedServer; "
    code += "print(EmbeddedServer(Path(sys.argv[1])).up().pid)"
    started = subprocess.run(
        [sys.executable, "-c", code, str(server.home)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    status = server.status()
    assert status.running and status.pid == int(started.stdout)
    assert select_one(server.url()) == 1


@pytest.mark.slow  # starts and stops a server of its own
def test_down_twice_then_up_again(server: EmbeddedServer) -> None:
    pid = server.up().pid
    first = server.down()
    second = server.down()
    assert not first.running and not second.running
    assert first.pid is None and first.url is None and first.socket_dir is None
    assert not (server.data_dir / "postmaster.pid").exists()
    again = server.up()
    assert again.running and again.pid != pid
    assert select_one(server.url()) == 1


@pytest.mark.slow  # starts and stops a server of its own
def test_up_survives_a_stale_pid_file_of_a_dead_process(server: EmbeddedServer) -> None:
    server.up()
    server.down()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_stale_pid_file(server, gone.pid)
    assert not server.status().running

    status = server.up()

    assert status.running and status.pid != gone.pid
    assert select_one(server.url()) == 1


@pytest.mark.slow  # starts and stops a server of its own
def test_up_survives_a_pid_file_naming_an_unrelated_live_process(server: EmbeddedServer) -> None:
    # This test's own process: alive, not postgres. postgres alone would refuse to start
    # ("lock file already exists"); gcos must see it is not our server and only remove the file.
    server.up()
    server.down()
    write_stale_pid_file(server, os.getpid())
    assert not server.status().running

    status = server.up()

    assert status.running and status.pid != os.getpid()
    assert select_one(server.url()) == 1
    assert server.down().running is False  # and stopping touches only our server


def test_long_home_falls_back_to_a_short_socket_dir(tmp_path: Path) -> None:
    home = tmp_path / ("h" * 110)
    srv = EmbeddedServer(home)
    try:
        assert not srv.socket_dir.is_relative_to(home)
        assert len(os.fsencode(srv.socket_dir / ".s.PGSQL.5432")) <= 107
        assert srv.up().socket_dir == srv.socket_dir
        assert select_one(srv.url()) == 1
    finally:
        srv.down()
    assert EmbeddedServer(home).socket_dir == srv.socket_dir  # stable: derived from the data dir


def test_home_is_gcos_home_else_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GCOS_HOME", raising=False)
    assert EmbeddedServer().data_dir == tmp_path.resolve() / ".gcos" / "data"
    monkeypatch.setenv("GCOS_HOME", str(tmp_path / "elsewhere"))
    assert EmbeddedServer().data_dir == tmp_path.resolve() / "elsewhere" / ".gcos" / "data"
    assert EmbeddedServer(tmp_path / "explicit").root == tmp_path.resolve() / "explicit" / ".gcos"


@pytest.mark.slow  # starts and stops a server of its own
def test_a_foreign_data_dir_is_refused_not_overwritten(server: EmbeddedServer) -> None:
    server.data_dir.mkdir(parents=True)
    (server.data_dir / "precious.txt").write_text("not postgres")
    with pytest.raises(DatabaseUnavailable) as caught:
        server.up()
    assert caught.value.exit_code == ExitCode.DATABASE_UNAVAILABLE
    assert str(server.data_dir) in caught.value.message
    assert (server.data_dir / "precious.txt").read_text() == "not postgres"


@pytest.mark.slow  # starts and stops a server of its own
def test_a_failed_start_says_where_the_log_is(server: EmbeddedServer) -> None:
    server.up()
    server.down()
    with (server.data_dir / "postgresql.conf").open("a") as conf:
        conf.write("max_connections = 'plenty'\n")
    with pytest.raises(DatabaseUnavailable) as caught:
        server.up()
    assert caught.value.exit_code == ExitCode.DATABASE_UNAVAILABLE
    assert str(server.log_file) in caught.value.message and "gcos db up" in caught.value.message
    assert "max_connections" in server.log_file.read_text()
    assert not server.status().running
