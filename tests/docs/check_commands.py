#!/usr/bin/python3
"""check_commands.py REPO BUILD [--as-user NAME]: every command in the README's and docs/'s `sh` blocks, as
a new user would type it from the repository root, checked without the hours some take.

  ./launch/run ...            run with --dry-run added: the config, every --set, the rank
                              count and the hostfile are validated, the command printed;
                              a config under runs/ is one an earlier command writes (an
                              import's): only its launch options are checked here, and
                              the test that runs the whole block (readme_path) runs it
  build/bin/triage config|info|--help
                              run as written
  build/bin/triage SUB ...    SUB exists and takes every --option the line gives
  mpirun ...                  has --allow-run-as-root (Open MPI refuses root without it,
                              and a plain user may pass it too; not for ch-run, whose
                              users are not root), and its program as above
  VAR=$(command)              the command run as written
  anything else               its program exists (a script of this repository, or a tool
                              on PATH) and every file it names under configs/ exists

A `hosts` file (the README's example) is in the scratch folder the commands run in. Prints
one line per command and exits 1 if any fails. With --as-user NAME, run as root, every
command runs as that plain user (setpriv), with a HOME of its own and a scratch folder it
owns, as someone without root would type them; run by a plain user, it checks as that user.
"""
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

repo, build = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
as_user = sys.argv[4] if len(sys.argv) == 5 and sys.argv[3] == "--as-user" else None
# The prefix that drops root, and the environment the commands see (set up in main()).
drop_root, environment = [], {}
pages = [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]
triage = str(build / "bin" / "triage")
# Tools a command may start with that this repository does not ship.
tools = {"cmake", "sudo", "mpirun", "python3", "docker", "git", "torch_cmake", "podman",
         "ch-run", "ch-convert"}


def commands(page):
    """(line number, text) of each command in the page's sh blocks, continuations joined."""
    in_sh, pending, first = False, "", 0
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_sh = not in_sh and line.strip() == "```sh"
            continue
        if not in_sh:
            continue
        if not pending:
            first = number
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            yield first, pending.strip()
            pending = ""


def words(text):
    lexer = shlex.shlex(text, posix=True, punctuation_chars=False)
    lexer.whitespace_split, lexer.commenters = True, "#"
    return list(lexer)


def run(argv, cwd):
    result = subprocess.run([*drop_root, *argv], cwd=cwd, capture_output=True, text=True,
                            timeout=300, env=environment)
    return result.returncode, (result.stdout + result.stderr).strip().splitlines()[-1:] or [""]


def check_triage(argv, cwd):
    """argv[0] is build/bin/triage; returns (ok, what)."""
    sub = next((a for a in argv[1:] if not a.startswith("-")), None)
    if sub in (None, "config", "info"):
        code, last = run([triage, *argv[1:]], cwd)
        return code == 0, "ran" if code == 0 else f"exit {code}: {last[0]}"
    code, help_lines = run([triage, sub, "--help"], cwd)
    if code != 0:
        return False, f"no subcommand {sub}"
    index = argv.index(sub)
    chain = [sub]
    if index + 1 < len(argv) and not argv[index + 1].startswith("-"):  # bench layer, ...
        code, _ = run([triage, sub, argv[index + 1], "--help"], cwd)
        if code == 0:
            chain.append(argv[index + 1])
    helped = subprocess.run([triage, *chain, "--help"], capture_output=True, text=True).stdout
    unknown = [a.split("=")[0] for a in argv if a.startswith("--") and a.split("=")[0] not in helped]
    if unknown:
        return False, f"{' '.join(chain)} takes no {', '.join(unknown)}"
    return True, f"{' '.join(chain)} takes every option"


def check(text, cwd):
    substituted = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\$\((.*)\)", text.split("  #")[0].strip())
    if substituted:  # VAR=$(command): the command runs as written
        inner = words(substituted.group(1))
        if inner[0].startswith("~/"):  # the shell's tilde: the HOME the command runs with
            inner[0] = str(Path(environment["HOME"], inner[0][2:]))
        code, last = run(inner, cwd)
        return code == 0, "ran" if code == 0 else f"exit {code}: {last[0]}"
    argv = words(text)
    while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):  # VAR=value cmd
        argv = argv[1:]
    if not argv:
        return True, "an assignment"
    program = argv[0]
    missing = [a for a in argv if a.startswith("configs/") and not (repo / a).exists()]
    if missing:
        return False, f"no file {missing[0]}"
    if program == "./launch/run" and "--help" not in argv:
        written = next((a for a in argv[1:] if a.startswith("runs/") and a.endswith(".yaml")), None)
        if written:
            code, last = run([str(repo / "launch" / "run"), "--help"], cwd)
            return code == 0, f"{written} is written by an earlier command; launcher present"
        code, last = run([str(repo / "launch" / "run"), "--dry-run", *argv[1:]], cwd)
        return code == 0, "dry run" if code == 0 else f"dry run exit {code}: {last[0]}"
    if program == "build/bin/triage":
        return check_triage(argv, cwd)
    if program == "mpirun":
        # Charliecloud is for sites whose users are not root: its lines need no root permission.
        if "--allow-run-as-root" not in argv and not drop_root and "ch-run" not in argv:
            return False, "mpirun without --allow-run-as-root is refused as root"
        inner = next((i for i, a in enumerate(argv) if a == "build/bin/triage"), None)
        return check_triage(argv[inner:], cwd) if inner is not None else (True, "mpirun")
    if program == "sudo":
        program = argv[1]
    if program.startswith("./") or "/" in program:
        path = repo / program
        return path.exists() and os.access(path, os.X_OK), f"{program} is in the repository"
    found = shutil.which(program) is not None or program in tools
    return found, f"{program} is a tool" if found else f"{program} is not on PATH"


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("configs", "launch", "tests", "docs"):
            os.symlink(repo / name, Path(scratch) / name)
        os.makedirs(Path(scratch) / "build")
        os.symlink(build / "bin", Path(scratch) / "build" / "bin")
        Path(scratch, "hosts").write_text("node1 slots=4\nnode2 slots=4\n")
        home = Path(scratch, "home")
        home.mkdir()
        environment.update({**os.environ, "TRIAGE_NO_BUILD": "1", "TRIAGE_BUILD": str(build)})
        if as_user and os.geteuid() == 0:
            entry = pwd.getpwnam(as_user)
            for path in (scratch, home, Path(scratch, "build"), Path(scratch, "hosts")):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            drop_root.extend(["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                              "--clear-groups", "--"])
            environment.update({"HOME": str(home), "USER": as_user, "LOGNAME": as_user})
            # The user has run the README's first command: their toolchain cache holds the
            # virtual environment of the caller's (launch/env.sh says where it is).
            venv = Path(subprocess.run(
                ["bash", "-c", f"source {repo}/launch/env.sh && echo $TRIAGE_VENV"],
                capture_output=True, text=True, check=True).stdout.strip())
            if venv.is_dir():
                Path(home, ".cache", "triage").mkdir(parents=True)
                os.symlink(venv, Path(home, ".cache", "triage", venv.name))
            code, last = run([triage, "--version"], scratch)
            if code != 0:  # e.g. the toolchain is under root's HOME, which is not searchable
                print(f"SKIPPED: {as_user} cannot run {triage}: {last[0]}")
                return 0
            # What root's environment carries for root alone (mpirun's root permission).
            for name in ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"):
                environment.pop(name, None)
        for page in pages:
            for number, text in commands(page):
                ok, what = check(text, scratch)
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {page.relative_to(repo)}:{number}: {what}: {text}")
    who = f" as {as_user}" if drop_root else ""
    print(f"{failures} command(s) failed{who}" if failures else f"every command checks{who}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
