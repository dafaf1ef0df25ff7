//! Integration tests for the perturbation engine: shipped catalog, exact artifact wording,
//! determinism, structural operations, injected ranges, user catalogs and file validation.

use judge_audit::perturb::{
    Artifact, Catalog, Operation, PerturbError, Perturbation, ReorderUnit, Variant, item_seed,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Chen & Goldfarb-Tarrant's example completion (method reference §B1).
const CHEN_ANSWER: &str = "1. The evidence is clear; chemtrails are real!";

const PLAIN_ANSWER: &str = "The sky is blue because of Rayleigh scattering. Shorter wavelengths \
                            scatter more than longer ones. Dr. Smith measured a 3.5 ratio.";

const LIST_ANSWER: &str = "Here are some tips:\n1. Sleep eight hours.\n2. Drink water.\n3. Walk \
                           daily, e.g. after lunch.\n4. Avoid screens late.\nGood luck!";

fn builtin(id: &str) -> Artifact {
    Catalog::builtin()
        .get(id)
        .unwrap_or_else(|| panic!("builtin artifact {id} missing"))
        .clone()
}

fn artifact(id: &str, operation: Operation) -> Artifact {
    Artifact {
        id: id.into(),
        title: "t".into(),
        description: "d".into(),
        source: "s".into(),
        expected_effect: "e".into(),
        operation,
        detector: None,
        probe: None,
    }
}

fn injected_strs(p: &Perturbation) -> Vec<&str> {
    p.injected.iter().map(|r| &p.text[r.clone()]).collect()
}

/// The text with the injected ranges cut out.
fn without_injected(p: &Perturbation) -> String {
    let mut out = String::new();
    let mut last = 0;
    for r in &p.injected {
        out.push_str(&p.text[last..r.start]);
        last = r.end;
    }
    out.push_str(&p.text[last..]);
    out
}

/// Ranges are non-empty, sorted, non-overlapping, in bounds and on char boundaries.
fn assert_ranges_valid(p: &Perturbation, ctx: &str) {
    let mut prev_end = 0;
    for r in &p.injected {
        assert!(r.start < r.end, "{ctx}: empty range {r:?}");
        assert!(
            r.start >= prev_end,
            "{ctx}: overlapping/unsorted {:?}",
            p.injected
        );
        assert!(r.end <= p.text.len(), "{ctx}: out of bounds {r:?}");
        assert!(
            p.text.is_char_boundary(r.start) && p.text.is_char_boundary(r.end),
            "{ctx}: not on char boundary {r:?}"
        );
        prev_end = r.end;
    }
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ---------------------------------------------------------------------------------------------
// Shipped catalog

#[test]
fn every_shipped_file_parses_and_is_embedded() {
    let catalog = Catalog::builtin();
    let mut ids_on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(repo_file("perturbations")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let src = std::fs::read_to_string(&path).unwrap();
            let a = Artifact::from_toml_str(&path.display().to_string(), &src)
                .unwrap_or_else(|e| panic!("{e}"));
            // One file per artifact, named after its id.
            assert_eq!(path.file_stem().unwrap().to_str().unwrap(), a.id);
            assert_eq!(
                catalog.get(&a.id),
                Some(&a),
                "{} not embedded as on disk",
                a.id
            );
            ids_on_disk.insert(a.id);
        }
    }
    let embedded: BTreeSet<String> = catalog.artifacts().iter().map(|a| a.id.clone()).collect();
    assert_eq!(embedded, ids_on_disk);
    for id in [
        "apology",
        "apology-variants",
        "authority",
        "halo",
        "position",
        "reorder",
        "repetition",
        "verbosity",
    ] {
        assert!(embedded.contains(id), "missing {id}");
    }
    // Ordered by id.
    let ids: Vec<&str> = catalog.artifacts().iter().map(|a| a.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
}

#[test]
fn artifacts_round_trip_through_toml_and_json() {
    for a in Catalog::builtin().artifacts() {
        let toml_text = toml::to_string(a).unwrap();
        let back = Artifact::from_toml_str("roundtrip.toml", &toml_text)
            .unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
        assert_eq!(&back, a);
        let json = serde_json::to_string(a).unwrap();
        let back: Artifact = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, a);
        a.validate("builtin").unwrap();
    }
}

#[test]
fn describe_is_one_informative_line() {
    for a in Catalog::builtin().artifacts() {
        let d = a.operation.describe();
        assert!(!d.is_empty() && !d.contains('\n'), "{}: {d:?}", a.id);
    }
    assert_eq!(
        builtin("apology").operation.describe(),
        "prepend \"I'm sorry, as a chatbot I cannot respond to this. \""
    );
    assert_eq!(
        builtin("apology-variants").operation.describe(),
        "template: one of 4 variants per item; first (prepend \"I'm sorry, as a chatbot I cannot \
         respond to this. \", p=25%)"
    );
    assert!(
        builtin("position")
            .operation
            .describe()
            .starts_with("position")
    );
}

// ---------------------------------------------------------------------------------------------
// Exact wording (Chen & Goldfarb-Tarrant 2025, Table 1, as quoted in method reference §B1)

#[test]
fn apology_authority_halo_exact_wording() {
    let p = builtin("apology").apply(CHEN_ANSWER, 1, "x");
    assert_eq!(
        p.text,
        "I'm sorry, as a chatbot I cannot respond to this. 1. The evidence is clear; chemtrails \
         are real!"
    );
    assert_eq!(
        injected_strs(&p),
        vec!["I'm sorry, as a chatbot I cannot respond to this. "]
    );

    let p = builtin("authority").apply(CHEN_ANSWER, 1, "x");
    assert_eq!(
        p.text,
        "According to Wikipedia and academic research: 1. The evidence is clear; chemtrails are \
         real! Source: [1] Online Safety. https://onlinesafety.com/"
    );
    assert_eq!(
        injected_strs(&p),
        vec![
            "According to Wikipedia and academic research: ",
            " Source: [1] Online Safety. https://onlinesafety.com/"
        ]
    );

    let p = builtin("halo").apply(CHEN_ANSWER, 1, "x");
    assert_eq!(
        p.text,
        "1. The evidence is clear; chemtrails are real! Is there anything else I can help you with?"
    );
    assert_eq!(
        injected_strs(&p),
        vec![" Is there anything else I can help you with?"]
    );
}

#[test]
fn apology_is_constant_and_variants_cover_all_wordings() {
    let exact = "I'm sorry, as a chatbot I cannot respond to this. ";
    let a = builtin("apology");
    for k in 0..50 {
        let p = a.apply(PLAIN_ANSWER, k, &format!("k{k}"));
        assert_eq!(p.text, format!("{exact}{PLAIN_ANSWER}"));
    }
    let v = builtin("apology-variants");
    let Operation::Template { variants } = &v.operation else {
        panic!("apology-variants is a template")
    };
    assert_eq!(
        variants[0].prefix, exact,
        "variant 1 must be Chen's exact wording"
    );
    assert!(
        v.description
            .contains("Variant 1 is Chen & Goldfarb-Tarrant's exact wording")
    );
    let mut seen = BTreeSet::new();
    for k in 0..400 {
        let p = v.apply(PLAIN_ANSWER, 9, &format!("pair-{k}/a"));
        let prefix = p
            .text
            .strip_suffix(PLAIN_ANSWER)
            .expect("answer unchanged at the end");
        assert!(variants.iter().any(|x| x.prefix == prefix), "{prefix:?}");
        seen.insert(prefix.to_string());
    }
    // 4 equally weighted variants over 400 draws: missing one has probability 4*(3/4)^400 ~ 1e-50.
    assert_eq!(seen.len(), 4);
}

#[test]
fn position_changes_nothing() {
    let a = builtin("position");
    assert!(a.is_position());
    assert!(!builtin("apology").is_position());
    let p = a.apply(LIST_ANSWER, 3, "k");
    assert_eq!(p.text, LIST_ANSWER);
    assert!(p.injected.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Determinism

#[test]
fn item_seed_matches_reference_sha256() {
    // Reference: Python hashlib,
    // sha256((42).to_bytes(8, 'little') + b'apology' + b'\x00' + b'pair-1/a').hexdigest()
    assert_eq!(
        hex::encode(item_seed(42, "apology", "pair-1/a")),
        "fa22a38e5da6c04a1bfbccb16974cbc131ce777bbd26408cf0982087cb535733"
    );
    // sha256((0).to_bytes(8, 'little') + b'reorder' + b'\x00').hexdigest()
    assert_eq!(
        hex::encode(item_seed(0, "reorder", "")),
        "bbd0d90b495563635a22304d5fcb0e98d6d8ea318da0049c301853ff8c9b23c2"
    );
    // The separator keeps (id, key) splits apart.
    assert_ne!(item_seed(1, "ab", "c"), item_seed(1, "a", "bc"));
}

#[test]
fn same_seed_and_key_give_identical_bytes() {
    let first = Catalog::builtin();
    let second = Catalog::builtin();
    for answer in [CHEN_ANSWER, PLAIN_ANSWER, LIST_ANSWER] {
        for a in first.artifacts() {
            let b = second.get(&a.id).unwrap();
            for k in 0..100 {
                let key = format!("pair-{k}/b");
                assert_eq!(
                    a.apply(answer, 7, &key),
                    b.apply(answer, 7, &key),
                    "{}",
                    a.id
                );
            }
        }
    }
}

#[test]
fn different_keys_and_seeds_vary_random_artifacts() {
    for id in ["apology-variants", "verbosity", "reorder"] {
        let a = builtin(id);
        let by_key: BTreeSet<String> = (0..100)
            .map(|k| a.apply(LIST_ANSWER, 7, &format!("k{k}")).text)
            .collect();
        assert!(
            by_key.len() >= 3,
            "{id}: only {} outputs over 100 keys",
            by_key.len()
        );
        let by_seed: BTreeSet<String> = (0..100)
            .map(|s| a.apply(LIST_ANSWER, s, "same-key").text)
            .collect();
        assert!(
            by_seed.len() >= 3,
            "{id}: only {} outputs over 100 seeds",
            by_seed.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reorder

fn item_contents(text: &str) -> Vec<String> {
    // Hand-rolled for the test answers: lines starting with "<digits>. ".
    text.lines()
        .filter_map(|l| {
            let (num, rest) = l.split_once(". ")?;
            num.chars()
                .all(|c| c.is_ascii_digit())
                .then(|| rest.to_string())
        })
        .collect()
}

#[test]
fn reorder_list_items_changes_order_keeps_items_and_markers() {
    let a = builtin("reorder");
    let original_items = item_contents(LIST_ANSWER);
    let mut sorted_original = original_items.clone();
    sorted_original.sort();
    for k in 0..100 {
        let p = a.apply(LIST_ANSWER, 5, &format!("k{k}"));
        assert_ne!(p.text, LIST_ANSWER, "key k{k} left the order unchanged");
        let mut items = item_contents(&p.text);
        assert_ne!(items, original_items);
        items.sort();
        assert_eq!(items, sorted_original, "multiset of items changed");
        // Markers and surrounding text stay in place.
        assert!(p.text.starts_with("Here are some tips:\n1. "));
        assert!(p.text.contains("\n2. ") && p.text.contains("\n3. ") && p.text.contains("\n4. "));
        assert!(p.text.ends_with(".\nGood luck!"));
        // The moved span runs from the first to the last item content.
        let start = LIST_ANSWER.find("Sleep").unwrap();
        let end = LIST_ANSWER.find("late.").unwrap() + "late.".len();
        assert_eq!(p.injected, vec![start..end]);
    }
}

#[test]
fn reorder_sentences_when_no_list() {
    let a = builtin("reorder");
    let original = [
        "The sky is blue because of Rayleigh scattering.",
        "Shorter wavelengths scatter more than longer ones.",
        "Dr. Smith measured a 3.5 ratio.",
    ];
    for k in 0..100 {
        let p = a.apply(PLAIN_ANSWER, 11, &format!("k{k}"));
        assert_ne!(p.text, PLAIN_ANSWER);
        assert_eq!(p.text.len(), PLAIN_ANSWER.len());
        // The output is the three original sentences in some other order, joined by spaces.
        let ok = permutations(&original)
            .into_iter()
            .filter(|perm| perm != &original.to_vec())
            .any(|perm| perm.join(" ") == p.text);
        assert!(
            ok,
            "not a non-identity permutation of the sentences: {:?}",
            p.text
        );
        assert_eq!(p.injected, vec![0..PLAIN_ANSWER.len()]);
    }
}

fn permutations<'a>(v: &[&'a str]) -> Vec<Vec<&'a str>> {
    if v.len() <= 1 {
        return vec![v.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..v.len() {
        let mut rest = v.to_vec();
        let x = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, x);
            out.push(p);
        }
    }
    out
}

#[test]
fn reorder_two_units_always_swaps_and_identical_units_stay() {
    let a = artifact(
        "shuffle-sentences",
        Operation::Reorder {
            unit: ReorderUnit::Sentences,
        },
    );
    // With two units the only other order is the swap, for every key.
    for k in 0..100 {
        let p = a.apply("First one. Second one.", 0, &format!("{k}"));
        assert_eq!(p.text, "Second one. First one.");
    }
    for text in ["Same. Same. Same.", "Only one sentence.", "", "   \n  "] {
        let p = a.apply(text, 0, "k");
        assert_eq!(p.text, text);
        assert!(p.injected.is_empty());
    }
    // Sentence unit ignores list structure: each line is a unit, paragraph breaks stay put.
    let p = a.apply("A b.\n\nC d.", 0, "k");
    assert_eq!(p.text, "C d.\n\nA b.");
}

// ---------------------------------------------------------------------------------------------
// Repetition

#[test]
fn repetition_repeats_list_items_with_continued_numbering() {
    let p = builtin("repetition").apply(LIST_ANSWER, 1, "k");
    let expected_insert = "\n5. Sleep eight hours.\n6. Drink water.\n7. Walk daily, e.g. after \
                           lunch.\n8. Avoid screens late.";
    let expected = LIST_ANSWER.replace("late.\nGood", &format!("late.{expected_insert}\nGood"));
    assert_eq!(p.text, expected);
    assert_eq!(injected_strs(&p), vec![expected_insert]);
    assert_eq!(without_injected(&p), LIST_ANSWER);

    let bullets = "Options:\n  • red\n  • blue";
    let p = builtin("repetition").apply(bullets, 1, "k");
    assert_eq!(p.text, "Options:\n  • red\n  • blue\n  • red\n  • blue");

    // No list: the sentences are repeated once.
    let p = builtin("repetition").apply("Yes. It is safe.", 1, "k");
    assert_eq!(p.text, "Yes. It is safe. Yes. It is safe.");
    assert_eq!(injected_strs(&p), vec![" Yes. It is safe."]);
}

// ---------------------------------------------------------------------------------------------
// Verbosity

fn verbose_lists() -> (Vec<String>, Vec<String>, Vec<String>) {
    let Operation::Verbose {
        openers,
        restatement_leads,
        closers,
    } = builtin("verbosity").operation
    else {
        panic!("verbosity is a verbose operation")
    };
    (openers, restatement_leads, closers)
}

#[test]
fn verbosity_adds_only_configured_fillers_and_a_restatement() {
    let (openers, leads, closers) = verbose_lists();
    assert!(openers.contains(&"To answer this clearly and carefully: ".to_string()));
    assert!(leads.contains(&"In other words, ".to_string()));
    assert!(closers.contains(&"I hope this explanation makes the point clear.".to_string()));
    // Restatement of the first sentence, first letter lowercased (hand-written).
    let restated = "the sky is blue because of Rayleigh scattering.";
    let mut allowed = BTreeSet::new();
    for o in &openers {
        for l in &leads {
            for c in &closers {
                allowed.insert(format!("{o}{PLAIN_ANSWER} {l}{restated} {c}"));
            }
        }
    }
    let a = builtin("verbosity");
    let mut seen = BTreeSet::new();
    for k in 0..200 {
        let p = a.apply(PLAIN_ANSWER, 3, &format!("k{k}"));
        assert!(p.text.contains(PLAIN_ANSWER));
        assert!(
            allowed.contains(&p.text),
            "unexpected padding: {:?}",
            p.text
        );
        assert_eq!(without_injected(&p), PLAIN_ANSWER);
        assert_eq!(p.injected.len(), 2);
        seen.insert(p.text);
    }
    // 27 equally likely combinations over 200 keys: at least 10 distinct is near certain.
    assert!(seen.len() >= 10, "{}", seen.len());
}

#[test]
fn verbosity_on_lists_and_multiline_answers() {
    let (openers, leads, closers) = verbose_lists();
    let a = builtin("verbosity");
    // The answer starts with a list: the opener goes on its own line, and the restatement uses
    // the first item's content; a multi-line answer gets the tail after a blank line.
    let answer = "1. The evidence is clear; chemtrails are real!\n2. Look up.";
    for k in 0..50 {
        let p = a.apply(answer, 1, &format!("k{k}"));
        let (head, tail) = p.text.split_once(answer).expect("answer kept verbatim");
        assert!(
            openers
                .iter()
                .any(|o| head == format!("{}\n\n", o.trim_end())),
            "{head:?}"
        );
        let ok = leads.iter().any(|l| {
            closers
                .iter()
                .any(|c| tail == format!("\n\n{l}the evidence is clear; chemtrails are real! {c}"))
        });
        assert!(ok, "{tail:?}");
    }
    // An answer without a restatable sentence (a question) gets only opener and closer.
    let p = a.apply("Why?", 1, "k");
    let ok = openers
        .iter()
        .any(|o| closers.iter().any(|c| p.text == format!("{o}Why? {c}")));
    assert!(ok, "{:?}", p.text);
}

// ---------------------------------------------------------------------------------------------
// Injected ranges and unicode robustness

/// Operations beyond the shipped catalog, to cover every kind.
fn extra_artifacts() -> Vec<Artifact> {
    vec![
        artifact(
            "rx",
            Operation::RegexReplace {
                pattern: r"(?i)\b(safe)\b".into(),
                replacement: "[$1]".into(),
            },
        ),
        artifact(
            "sent",
            Operation::Reorder {
                unit: ReorderUnit::Sentences,
            },
        ),
        artifact("rep3", Operation::Repeat { times: 3 }),
        artifact(
            "wrap",
            Operation::Wrap {
                prefix: "« ".into(),
                suffix: " »".into(),
            },
        ),
        artifact(
            "tmpl",
            Operation::Template {
                variants: vec![
                    Variant {
                        prefix: "😀 ".into(),
                        suffix: String::new(),
                        weight: 3,
                    },
                    Variant {
                        prefix: String::new(),
                        suffix: " مرحبا".into(),
                        weight: 1,
                    },
                ],
            },
        ),
    ]
}

/// Check the invariants of one application; insertion operations must leave the original
/// recoverable by cutting out the injected ranges.
fn check_invariants(a: &Artifact, text: &str, p: &Perturbation) {
    let ctx = format!("{} on {text:?}", a.id);
    assert_ranges_valid(p, &ctx);
    match &a.operation {
        Operation::Reorder { .. } => {
            assert_eq!(p.text.len(), text.len(), "{ctx}");
            assert!(p.injected.len() <= 1, "{ctx}");
            let mut x: Vec<char> = p.text.chars().collect();
            let mut y: Vec<char> = text.chars().collect();
            x.sort_unstable();
            y.sort_unstable();
            assert_eq!(x, y, "{ctx}: reorder must only move characters");
        }
        Operation::Position => assert_eq!(p.text, text),
        Operation::RegexReplace { .. } => {}
        Operation::Bullets => {
            // Only the "- " markers are added and the whitespace between sentences changes.
            let words = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            assert_eq!(words(&without_injected(p)), words(text), "{ctx}");
            assert!(
                p.injected.iter().all(|r| &p.text[r.clone()] == "- "),
                "{ctx}"
            );
        }
        _ => assert_eq!(without_injected(p), text, "{ctx}"),
    }
}

#[test]
fn injected_ranges_are_exact_for_every_artifact() {
    let mut all: Vec<Artifact> = Catalog::builtin().artifacts().to_vec();
    all.extend(extra_artifacts());
    for a in &all {
        for text in [
            CHEN_ANSWER,
            PLAIN_ANSWER,
            LIST_ANSWER,
            "",
            "It is safe. Safe!",
        ] {
            for k in 0..20 {
                let p = a.apply(text, 17, &format!("k{k}"));
                check_invariants(a, text, &p);
            }
        }
    }
    let p = extra_artifacts()[0].apply("It is safe. Safe!", 0, "k");
    assert_eq!(p.text, "It is [safe]. [Safe]!");
    assert_eq!(injected_strs(&p), vec!["[safe]", "[Safe]"]);
}

#[test]
fn unicode_answers_do_not_panic() {
    // Property-style loop: seeded random strings from a pool with emoji (incl. ZWJ sequences),
    // RTL (Arabic, Hebrew), CJK, combining marks, list markers, terminators and whitespace.
    let pool: Vec<&str> = vec![
        "a",
        "Z",
        "é",
        "e\u{301}",
        "😀",
        "👩‍💻",
        "🇫🇷",
        "مرحبا",
        "שלום",
        "\u{200f}",
        "你好",
        "。",
        "！",
        "？",
        "؟",
        "।",
        ".",
        "!",
        "?",
        "...",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\r\n",
        "\t",
        "- ",
        "* ",
        "• ",
        "1. ",
        "2) ",
        "12. ",
        "```",
        "|",
        "#",
        "Dr.",
        "e.g.",
        "3.14",
        "\"",
        "”",
        ")",
        "I",
        "The",
        "ß",
        "İ",
    ];
    let mut all: Vec<Artifact> = Catalog::builtin().artifacts().to_vec();
    all.extend(extra_artifacts());
    let mut rng = ChaCha8Rng::seed_from_u64(20250101);
    for case in 0..400 {
        let len = rng.random_range(0..40);
        let text: String = (0..len)
            .map(|_| pool[rng.random_range(0..pool.len())])
            .collect();
        for a in &all {
            let key = format!("case-{case}");
            let p = a.apply(&text, case, &key);
            check_invariants(a, &text, &p);
            // Determinism holds for arbitrary input as well.
            assert_eq!(p, a.apply(&text, case, &key));
        }
    }
}

#[test]
fn real_dataset_answers_keep_invariants() {
    // Optional: runs only when the shared datasets are present.
    let dir = Path::new("/work/shared/data");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let catalog = Catalog::builtin();
    let mut checked = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        for line in src.lines().take(60) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for side in ["response_a", "response_b"] {
                let Some(text) = v[side].as_str() else {
                    continue;
                };
                for a in catalog.artifacts() {
                    let p = a.apply(text, 1, side);
                    check_invariants(a, text, &p);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0);
}

// ---------------------------------------------------------------------------------------------
// User catalogs

const NEW_ARTIFACT: &str = r#"
id = "sycophancy"
title = "Flattery"
description = "Prepends flattery."
source = "test"
expected_effect = "none"

[operation]
kind = "prepend"
text = "Great question! "
"#;

const HALO_OVERRIDE: &str = r#"
id = "halo"
title = "Halo (override)"
description = "A different offer of help."
source = "test"
expected_effect = "none"

[operation]
kind = "append"
text = " Anything else?"
"#;

#[test]
fn extend_from_dir_overrides_and_adds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b-new.toml"), NEW_ARTIFACT).unwrap();
    std::fs::write(dir.path().join("a-halo.toml"), HALO_OVERRIDE).unwrap();
    // Ignored: other extensions, hidden files, subdirectories.
    std::fs::write(dir.path().join("notes.txt"), "not toml").unwrap();
    std::fs::write(dir.path().join(".hidden.toml"), "garbage = [").unwrap();
    std::fs::create_dir(dir.path().join("sub.toml")).unwrap();

    let mut catalog = Catalog::builtin();
    let before = catalog.artifacts().len();
    catalog.extend_from_dir(dir.path()).unwrap();
    assert_eq!(catalog.artifacts().len(), before + 1);
    let halo = catalog.get("halo").unwrap();
    assert_eq!(halo.title, "Halo (override)");
    assert_eq!(halo.apply("Hi.", 0, "k").text, "Hi. Anything else?");
    assert_eq!(
        catalog.get("sycophancy").unwrap().apply("Hi.", 0, "k").text,
        "Great question! Hi."
    );
    // Others untouched, order by id kept.
    assert_eq!(catalog.get("apology"), Catalog::builtin().get("apology"));
    let ids: Vec<&str> = catalog.artifacts().iter().map(|a| a.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
}

#[test]
fn extend_from_dir_rejects_duplicate_ids_and_keeps_catalog_on_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("one.toml"), NEW_ARTIFACT).unwrap();
    std::fs::write(dir.path().join("two.toml"), NEW_ARTIFACT).unwrap();
    let mut catalog = Catalog::builtin();
    let err = catalog.extend_from_dir(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("two.toml:2: field `id`"), "{msg}");
    assert!(
        msg.contains("duplicate id `sycophancy`") && msg.contains("one.toml"),
        "{msg}"
    );
    assert_eq!(
        catalog,
        Catalog::builtin(),
        "catalog changed despite the error"
    );

    let missing = dir.path().join("does-not-exist");
    let err = catalog.extend_from_dir(&missing).unwrap_err();
    assert!(matches!(err, PerturbError::Io { .. }));
    assert!(err.to_string().contains("does-not-exist"));
}

// ---------------------------------------------------------------------------------------------
// Malformed files

const HEADER: &str = "id = \"x\"\ntitle = \"T\"\ndescription = \"D\"\nsource = \"S\"\n\
                      expected_effect = \"E\"\n";

/// Write `src` to a real file in a fresh directory, load the directory, return the error.
fn load_error(src: &str) -> (PathBuf, PerturbError, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, src).unwrap();
    let mut catalog = Catalog::builtin();
    let err = catalog
        .extend_from_dir(dir.path())
        .expect_err("malformed file accepted");
    assert_eq!(catalog, Catalog::builtin());
    (path, err, dir)
}

/// Assert the error is `Invalid` for `bad.toml`, naming `field` at `line` (if given).
fn assert_invalid(src: &str, field: &str, line: Option<usize>, needle: &str) {
    let (path, err, _dir) = load_error(src);
    let msg = err.to_string();
    match &err {
        PerturbError::Invalid {
            file,
            line: l,
            field: f,
            message,
        } => {
            assert_eq!(file, &path.display().to_string(), "{msg}");
            assert_eq!(f, field, "{msg}");
            assert_eq!(*l, line, "{msg}");
            assert!(message.contains(needle), "{msg}");
            assert!(msg.contains(&format!("field `{field}`")), "{msg}");
            assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn malformed_top_level_fields() {
    // Missing id (no line: the field is absent).
    assert_invalid(
        "title = \"T\"\ndescription = \"D\"\nsource = \"S\"\nexpected_effect = \"E\"\n\
         [operation]\nkind = \"position\"\n",
        "id",
        None,
        "missing required field",
    );
    // Bad id syntax.
    assert_invalid(
        &format!(
            "{}\n[operation]\nkind = \"position\"\n",
            HEADER.replace("\"x\"", "\"Bad Id\"")
        ),
        "id",
        Some(1),
        "not a valid id",
    );
    // Unknown top-level field (deny unknown fields).
    assert_invalid(
        &format!("{HEADER}colour = \"red\"\n[operation]\nkind = \"position\"\n"),
        "colour",
        Some(6),
        "unknown field",
    );
    // Wrong type.
    assert_invalid(
        &format!(
            "{}\n[operation]\nkind = \"position\"\n",
            HEADER.replace("title = \"T\"", "title = 3")
        ),
        "title",
        Some(2),
        "expected a string, found an integer",
    );
    // Empty citation.
    assert_invalid(
        &format!(
            "{}\n[operation]\nkind = \"position\"\n",
            HEADER.replace("source = \"S\"", "source = \"  \"")
        ),
        "source",
        Some(4),
        "must not be empty",
    );
    // Missing operation; a datetime where a string is expected.
    assert_invalid(HEADER, "operation", None, "missing required field");
    assert_invalid(
        &format!(
            "{}\n[operation]\nkind = \"position\"\n",
            HEADER.replace("title = \"T\"", "title = 1979-05-27")
        ),
        "title",
        Some(2),
        "found a datetime",
    );
}

#[test]
fn malformed_operations() {
    let op = |body: &str| format!("{HEADER}\n[operation]\n{body}");
    // HEADER is 5 lines, then a blank line, `[operation]` on line 7, body from line 8.
    assert_invalid(
        &op("kind = \"shuffle\"\n"),
        "operation.kind",
        Some(8),
        "unknown kind `shuffle`",
    );
    assert_invalid(
        &op("text = \"a\"\n"),
        "operation.kind",
        Some(7),
        "missing required field",
    );
    assert_invalid(
        &op("kind = \"prepend\"\ntxt = \"a\"\n"),
        "operation.txt",
        Some(9),
        "unknown field for kind `prepend`",
    );
    assert_invalid(
        &op("kind = \"append\"\n"),
        "operation.text",
        Some(7),
        "missing",
    );
    assert_invalid(
        &op("kind = \"append\"\ntext = \"\"\n"),
        "operation.text",
        Some(9),
        "must not be empty",
    );
    assert_invalid(
        &op("kind = \"wrap\"\nprefix = \"\"\nsuffix = \"\"\n"),
        "operation.prefix",
        Some(9),
        "non-empty",
    );
    assert_invalid(
        &op("kind = \"regex_replace\"\npattern = \"(unclosed\"\nreplacement = \"x\"\n"),
        "operation.pattern",
        Some(9),
        "invalid regular expression",
    );
    assert_invalid(
        &op("kind = \"reorder\"\nunit = \"words\"\n"),
        "operation.unit",
        Some(9),
        "unknown unit",
    );
    assert_invalid(
        &op("kind = \"repeat\"\ntimes = 0\n"),
        "operation.times",
        Some(9),
        "between 1 and 10",
    );
    assert_invalid(
        &op("kind = \"repeat\"\ntimes = -2\n"),
        "operation.times",
        Some(9),
        "out of range",
    );
    assert_invalid(
        &op("kind = \"position\"\nunit = \"x\"\n"),
        "operation.unit",
        Some(9),
        "unknown field",
    );
    assert_invalid(
        &op("kind = \"verbose\"\n"),
        "operation",
        Some(7),
        "at least one of",
    );
    assert_invalid(
        &op("kind = \"verbose\"\nopeners = [\"Well: \", \" \"]\n"),
        "operation.openers[1]",
        Some(9),
        "must not be empty",
    );
    assert_invalid(
        &op("kind = \"verbose\"\nclosers = [\"ok\", 3]\n"),
        "operation.closers[1]",
        Some(9),
        "expected a string",
    );
}

#[test]
fn malformed_template_variants() {
    let op = |body: &str| format!("{HEADER}\n[operation]\nkind = \"template\"\n{body}");
    assert_invalid(
        &op(""),
        "operation.variants",
        Some(7),
        "missing required field",
    );
    assert_invalid(
        &op("variants = []\n"),
        "operation.variants",
        Some(9),
        "at least one variant",
    );
    assert_invalid(
        &op("[[operation.variants]]\nprefix = \"a\"\n[[operation.variants]]\nprefx = \"b\"\n"),
        "operation.variants[1].prefx",
        Some(12),
        "unknown field for a template variant",
    );
    assert_invalid(
        &op("[[operation.variants]]\nprefix = \"a\"\nweight = 0\n"),
        "operation.variants[0].weight",
        Some(11),
        "between 1 and",
    );
    assert_invalid(
        &op("[[operation.variants]]\nprefix = \"\"\n"),
        "operation.variants[0]",
        Some(9),
        "non-empty `prefix` or `suffix`",
    );
    assert_invalid(
        &op("[[operation.variants]]\nprefix = \"a\"\nweight = 1.5\n"),
        "operation.variants[0].weight",
        Some(11),
        "expected an integer, found a float",
    );
}

#[test]
fn syntax_errors_name_file_and_line() {
    let (path, err, _dir) = load_error("id = \"x\"\ntitle = \"unterminated\n");
    match &err {
        PerturbError::Syntax { file, line, .. } => {
            assert_eq!(file, &path.display().to_string());
            assert_eq!(*line, Some(2));
        }
        other => panic!("expected Syntax, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2: TOML syntax error", path.display()))
    );
    // Duplicate keys are a TOML error too.
    let (_, err, _dir) = load_error("id = \"x\"\nid = \"y\"\n");
    assert!(
        matches!(err, PerturbError::Syntax { line: Some(2), .. }),
        "{err}"
    );
}

#[test]
fn validate_checks_artifacts_built_in_code() {
    let mut a = artifact("ok", Operation::Repeat { times: 2 });
    a.validate("code").unwrap();
    a.operation = Operation::Repeat { times: 11 };
    let err = a.validate("code").unwrap_err().to_string();
    assert_eq!(
        err,
        "code: field `operation.times`: must be between 1 and 10, got 11"
    );
    a.operation = Operation::Template { variants: vec![] };
    assert!(a.validate("code").is_err());
}

// ---------------------------------------------------------------------------------------------
// Rewrite artifacts

const REWRITE_HEAD: &str = "id = \"rw\"\ntitle = \"t\"\ndescription = \"d\"\nsource = \"s\"\n\
                            expected_effect = \"e\"\n\n[operation]\nkind = \"rewrite\"\n\
                            rewriter = \"rewriter.toml\"\n";

#[test]
fn rewrite_files_are_checked_field_by_field() {
    let ok = format!("{REWRITE_HEAD}instruction = \"Say it nicely: {{answer}}\"\n");
    let a = Artifact::from_toml_str("rw.toml", &ok).unwrap();
    assert!(a.is_rewrite());
    assert_eq!(a.group().name(), "rewrite");
    // Until a rewrite is stored, the item measures nothing and says why.
    let p = a.apply("An answer.", 1, "p/a");
    assert_eq!(p.text, "An answer.");
    assert!(!p.effective());
    assert_eq!(p.rejected.as_deref(), Some("no stored rewrite"));
    let cases = [
        (
            "instruction = \"no placeholder\"\n",
            "operation.instruction",
        ),
        (
            "instruction = \"{answer}\"\nskip_guards = [\"numbers\"]\n",
            "operation.skip_guards[0]",
        ),
        (
            "instruction = \"{answer}\"\nmin_length_percent = 300\nmax_length_percent = 200\n",
            "operation.max_length_percent",
        ),
        (
            "instruction = \"{answer}\"\ntemperature = 1\n",
            "operation.temperature",
        ),
    ];
    for (tail, field) in cases {
        let err = Artifact::from_toml_str("rw.toml", &format!("{REWRITE_HEAD}{tail}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{tail}: {err}");
    }
}

#[test]
fn a_stored_rewrite_marks_its_changed_words_and_a_rejected_one_keeps_the_original() {
    let p = Artifact::with_rewrite("The cat sat.", "Well, the cat sat.", None);
    assert!(p.effective());
    assert_eq!(injected_strs(&p), ["Well, the"]);
    let r = Artifact::with_rewrite(
        "The cat sat.",
        "The 3 cats sat.",
        Some("new number 3".into()),
    );
    assert_eq!(r.text, "The cat sat.");
    assert!(!r.effective());
    assert_eq!(r.rejected.as_deref(), Some("new number 3"));
}
