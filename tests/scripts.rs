//! The shell scripts CI and the quick start rely on, run for real with fake build tools.
//!
//! `scripts/build-llama-server.sh` reuses a cached llama-server only when it was built with the
//! same CPU flags and, given a model, loads it and answers one request. Here `cmake`, `c++` and
//! `make` are stand-ins on PATH (the "build" copies a tiny Python server into place), the
//! "model" is a small file, and the broken cached binary behaves like the one seen on a Xeon:
//! `--version` works, loading the model dies with SIGILL. Needs bash, python3 and curl (the
//! scripts' own requirements; CI installs them).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write_exec(path: &Path, body: &str) {
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A llama-server stand-in that loads (checks) the model and serves /health and one chat
/// completion on the given loopback port.
const GOOD_SERVER: &str = r#"#!/usr/bin/env python3
import http.server, json, os, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("version: 0 (fake good server)"); sys.exit(0)
model = args[args.index("-m") + 1]
port = int(args[args.index("--port") + 1])
if not os.path.isfile(model):
    print("failed to load model", model, file=sys.stderr); sys.exit(1)
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        self.reply({"status": "ok"})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.reply({"choices": [{"message": {"role": "assistant", "content": "A"}}]})
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// The binary seen on the Xeon: prints its version, dies with SIGILL when it loads the model.
const SIGILL_SERVER: &str = r#"#!/usr/bin/env bash
if [[ "$1" == --version ]]; then echo "version: 0 (fake, built for another CPU)"; exit 0; fi
echo "load_tensors: loading model tensors (fake)" >&2
kill -ILL $$
"#;

/// Fake build tools: `cmake -S SRC -B BUILD ...` records its flags; `cmake --build BUILD ...`
/// puts the good server at BUILD/bin/llama-server and counts builds.
const FAKE_CMAKE: &str = r#"#!/usr/bin/env bash
if [[ "$1" == --build ]]; then
  mkdir -p "$2/bin"
  cp "$FAKE_GOOD_SERVER" "$2/bin/llama-server"
  chmod +x "$2/bin/llama-server"
  echo build >>"$FAKE_LOG"
else
  echo "configure $*" >>"$FAKE_LOG"
fi
"#;

struct Sandbox {
    _dir: tempfile::TempDir,
    home: PathBuf,
    tools: PathBuf,
    src: PathBuf,
    model: PathBuf,
    log: PathBuf,
    good: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        for tool in ["bash", "python3", "curl"] {
            let found = Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .output()
                .unwrap();
            assert!(
                found.status.success(),
                "{tool} is required by the scripts under test (and by CI); install it"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let tools = dir.path().join("tools");
        let src = dir.path().join("llama.cpp");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&tools).unwrap();
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("CMakeLists.txt"), "# fake llama.cpp\n").unwrap();
        let model = dir.path().join("model.gguf");
        fs::write(&model, b"GGUF fake").unwrap();
        let good = dir.path().join("good-server");
        write_exec(&good, GOOD_SERVER);
        write_exec(&tools.join("cmake"), FAKE_CMAKE);
        write_exec(&tools.join("c++"), "#!/bin/sh\nexit 0\n");
        write_exec(&tools.join("make"), "#!/bin/sh\nexit 0\n");
        let log = dir.path().join("build.log");
        Sandbox {
            _dir: dir,
            home,
            tools,
            src,
            model,
            log,
            good,
        }
    }

    fn script(&self, name: &str, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.tools.display(),
            std::env::var("PATH").unwrap()
        );
        Command::new("bash")
            .arg(repo().join("scripts").join(name))
            .args(args)
            .env("PATH", path)
            .env("JUDGE_AUDIT_HOME", &self.home)
            .env("JUDGE_AUDIT_LLAMA_SRC", &self.src)
            .env("JUDGE_AUDIT_SERVER_WAIT", "30")
            .env("FAKE_GOOD_SERVER", &self.good)
            .env("FAKE_LOG", &self.log)
            .env_remove("JUDGE_AUDIT_MODEL")
            .env_remove("JUDGE_AUDIT_GGML_NATIVE")
            .env_remove("JUDGE_AUDIT_LLAMA_SERVER")
            .output()
            .unwrap()
    }

    fn build(&self) -> Output {
        self.script(
            "build-llama-server.sh",
            &["--model", self.model.to_str().unwrap()],
        )
    }

    fn builds(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "build")
            .count()
    }

    fn cached_path(&self) -> PathBuf {
        let out = self.script("build-llama-server.sh", &["--path"]);
        assert!(out.status.success(), "{}", stderr(&out));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_cached_llama_server_that_cannot_load_the_model_is_rebuilt() {
    let sb = Sandbox::new();
    let bin = sb.cached_path();

    // First run: nothing cached, one build, the portable flags recorded.
    let first = sb.build();
    assert!(
        first.status.success(),
        "first build failed:\n{}",
        stderr(&first)
    );
    assert_eq!(stdout_last_line(&first), bin.display().to_string());
    assert_eq!(sb.builds(), 1);
    let info = fs::read_to_string(bin.with_file_name("BUILD_INFO")).unwrap();
    assert!(
        info.contains(
            "flags: -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
        ),
        "{info}"
    );
    let configure = fs::read_to_string(&sb.log).unwrap();
    assert!(configure.contains("-DGGML_NATIVE=OFF"), "{configure}");
    assert!(configure.contains("-DGGML_AVX512=OFF"), "{configure}");
    assert!(!configure.contains("-DGGML_NATIVE=ON"), "{configure}");

    // Second run: the healthy cached server is reused after answering a real request.
    let second = sb.build();
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(sb.builds(), 1, "a healthy cached server was rebuilt");
    assert!(stderr(&second).contains("loaded model.gguf and answered one request"));

    // The Xeon case: the cached binary passes --version but dies with SIGILL on load.
    write_exec(&bin, SIGILL_SERVER);
    let third = sb.build();
    let err = stderr(&third);
    assert!(third.status.success(), "{err}");
    assert_eq!(
        sb.builds(),
        2,
        "the broken cached server was not rebuilt:\n{err}"
    );
    assert!(
        err.contains("exit 132"),
        "the SIGILL is not reported:\n{err}"
    );
    assert!(
        err.contains("load_tensors: loading model tensors (fake)"),
        "the server's own log is not shown:\n{err}"
    );
    assert_eq!(stdout_last_line(&third), bin.display().to_string());
    assert_eq!(
        fs::read_to_string(&bin).unwrap(),
        GOOD_SERVER,
        "the broken binary is still cached"
    );
}

#[test]
fn a_cached_llama_server_built_with_other_flags_is_not_reused() {
    let sb = Sandbox::new();
    let bin = sb.cached_path();
    assert!(sb.build().status.success());
    assert_eq!(sb.builds(), 1);
    // Same directory, but BUILD_INFO says it was built natively (e.g. an old cache layout).
    let info_path = bin.with_file_name("BUILD_INFO");
    let info = fs::read_to_string(&info_path).unwrap();
    let flags_line = info.lines().find(|l| l.starts_with("flags: ")).unwrap();
    fs::write(
        &info_path,
        info.replace(flags_line, "flags: -DGGML_NATIVE=ON"),
    )
    .unwrap();
    let out = sb.build();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.builds(), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("BUILD_INFO does not record the flags"));

    // A native build lives in its own directory, named after this CPU, never the portable one.
    let native = Command::new("bash")
        .arg(repo().join("scripts/build-llama-server.sh"))
        .arg("--path")
        .env("JUDGE_AUDIT_HOME", &sb.home)
        .env("JUDGE_AUDIT_GGML_NATIVE", "ON")
        .output()
        .unwrap();
    let native_path = String::from_utf8(native.stdout).unwrap();
    assert!(native_path.contains("-native-"), "{native_path}");
    assert_ne!(PathBuf::from(native_path.trim()), bin);
}

#[test]
fn a_llama_server_that_dies_on_start_fails_with_its_own_log() {
    let sb = Sandbox::new();
    let bad = sb.home.join("bad-server");
    write_exec(&bad, SIGILL_SERVER);
    let out = Command::new("bash")
        .arg(repo().join("scripts/start-llama-server.sh"))
        .arg(&sb.model)
        .arg("18597")
        .env("JUDGE_AUDIT_HOME", &sb.home)
        .env("JUDGE_AUDIT_LLAMA_SERVER", &bad)
        .env("JUDGE_AUDIT_SERVER_WAIT", "30")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(out.stdout.is_empty(), "a URL was printed for a dead server");
    assert!(err.contains("status 132"), "{err}");
    assert!(
        err.contains("load_tensors: loading model tensors (fake)"),
        "{err}"
    );
}

/// `export VAR="$(cmd)"` and `local VAR="$(cmd)"` return the status of `export`/`local`, so
/// `set -e` never sees cmd fail: CI once went on for 8 minutes after llama-server failed to start.
#[test]
fn ci_and_scripts_never_hide_a_failed_command_substitution() {
    let mut files = vec![repo().join(".ci/run")];
    for entry in fs::read_dir(repo().join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sh") {
            files.push(path);
        }
    }
    let mut bad = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            for keyword in ["export ", "local ", "readonly ", "declare "] {
                if let Some(rest) = code.strip_prefix(keyword)
                    && (rest.contains("=\"$(") || rest.contains("=$("))
                {
                    bad.push(format!("{}:{}: {line}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(bad.is_empty(), "assign, then export:\n{}", bad.join("\n"));
}

/// Every apt-get in CI and the quick start waits for a dpkg lock held by another apt run (a
/// fresh machine often runs unattended upgrades at boot) instead of failing at once.
#[test]
fn every_apt_get_waits_for_the_dpkg_lock() {
    let mut bad = Vec::new();
    for file in [
        ".ci/run",
        "scripts/demo.sh",
        "scripts/build-llama-server.sh",
    ] {
        let text = fs::read_to_string(repo().join(file)).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            let runs_apt = code.contains("apt-get ")
                && (code.contains(" update") || code.contains(" install -"))
                && !code.starts_with('#')
                && !code.starts_with("log ")
                && !code.starts_with("echo ");
            if runs_apt && !line.contains("DPkg::Lock::Timeout=") {
                bad.push(format!("{file}:{}: {line}", n + 1));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "apt-get without a lock timeout:\n{}",
        bad.join("\n")
    );
}
