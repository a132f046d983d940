//! Merkle proofs of the audit log: roots, inclusion for every leaf and
//! consistency for every pair of sizes, checked against an independent
//! implementation of RFC 9162 §2.1 and against corruption.

use focal_proto::ProtoError;
use focal_proto::audit::{
    EMPTY_HASH, Hash, MemoryLog, RootBuilder, TreeHead, consistency_proof_len, hashes_from_concatenated,
    inclusion_proof_len, leaf_hash, node_hash, verify_consistency, verify_inclusion,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn log_of(n: usize, rng: &mut StdRng) -> MemoryLog {
    MemoryLog::from_leaves((0..n).map(|i| {
        let len = rng.random_range(0..40);
        let mut v: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        v.extend_from_slice(&(i as u64).to_be_bytes());
        v
    }))
}

// ---- RFC 9162 §2.1, written from the text (recursive, slow, obviously right)

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => EMPTY_HASH,
        1 => leaf_hash(&d[0]),
        n => {
            let k = k_of(n);
            node_hash(mth(&d[..k]), mth(&d[k..]))
        }
    }
}

fn path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

#[test]
fn known_answers() {
    // RFC 6962 test vectors (certificate-transparency-go merkletree tests).
    assert_eq!(hex(&EMPTY_HASH), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(hex(&leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    let leaves: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0x10],
        vec![0x20, 0x21],
        vec![0x30, 0x31],
        vec![0x40, 0x41, 0x42, 0x43],
        vec![0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        vec![0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f],
    ];
    let log = MemoryLog::from_leaves(leaves);
    assert_eq!(hex(&log.head().root), "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
    assert_eq!(
        hex(&log.root_at(3).unwrap()),
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
    );
}

fn hex(h: &Hash) -> String {
    h.0.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn roots_and_proofs_match_the_rfc_definition() {
    let mut rng = StdRng::seed_from_u64(1);
    let log = log_of(70, &mut rng);
    let d = log.leaves();
    for n in 0..=d.len() {
        assert_eq!(log.root_at(n as u64).unwrap(), mth(&d[..n]), "root of size {n}");
        for m in 0..n {
            assert_eq!(log.inclusion_proof(m as u64, n as u64).unwrap(), path(m, &d[..n]), "path {m} in {n}");
        }
        for m in 1..=n {
            assert_eq!(
                log.consistency_proof(m as u64, n as u64).unwrap(),
                subproof(m, &d[..n], true),
                "{m}->{n}"
            );
        }
    }
}

#[test]
fn root_builder_matches_and_resumes() {
    let mut rng = StdRng::seed_from_u64(2);
    let log = log_of(600, &mut rng);
    let mut b = RootBuilder::new();
    assert_eq!(b.root(), EMPTY_HASH);
    for (i, leaf) in log.leaves().iter().enumerate() {
        b.push_leaf(leaf);
        assert_eq!(b.head(), TreeHead { size: i as u64 + 1, root: log.root_at(i as u64 + 1).unwrap() });
        let resumed = RootBuilder::from_frontier(b.size(), &b.frontier()).unwrap();
        assert_eq!(resumed.root(), b.root());
    }
    assert!(RootBuilder::from_frontier(5, &[EMPTY_HASH]).is_err());
}

fn check_all_inclusions(log: &MemoryLog, n: u64) {
    let head = TreeHead { size: n, root: log.root_at(n).unwrap() };
    for i in 0..n {
        let proof = log.inclusion_proof(i, n).unwrap();
        verify_inclusion(leaf_hash(log.leaf(i).unwrap()), i, &head, &proof).unwrap();
    }
}

fn check_consistency(log: &MemoryLog, m: u64, n: u64) {
    let old = TreeHead { size: m, root: log.root_at(m).unwrap() };
    let new = TreeHead { size: n, root: log.root_at(n).unwrap() };
    let proof = log.consistency_proof(m, n).unwrap();
    verify_consistency(&old, &new, &proof).unwrap_or_else(|e| panic!("{m}->{n}: {e}"));
}

#[test]
fn every_leaf_and_every_pair_up_to_300() {
    let mut rng = StdRng::seed_from_u64(3);
    let log = log_of(300, &mut rng);
    for n in 0..=300 {
        check_all_inclusions(&log, n);
        for m in 0..=n {
            check_consistency(&log, m, n);
        }
    }
}

#[test]
fn random_trees_up_to_3000() {
    let mut rng = StdRng::seed_from_u64(4);
    for _ in 0..4 {
        let n = rng.random_range(301..=3000u64);
        let log = log_of(n as usize, &mut rng);
        check_all_inclusions(&log, n);
        for m in 0..=n {
            // every old size against the full tree, and a random pair
            check_consistency(&log, m, n);
            let a = rng.random_range(0..=n);
            let b = rng.random_range(a..=n);
            check_consistency(&log, a, b);
        }
    }
}

fn flip(h: &Hash, byte: usize, bit: u8) -> Hash {
    let mut h = *h;
    h.0[byte] ^= 1 << bit;
    h
}

#[test]
fn any_flipped_bit_in_a_proof_or_root_or_leaf_fails() {
    let mut rng = StdRng::seed_from_u64(5);
    let log = log_of(77, &mut rng);
    let n = 77;
    let head = log.head();
    for i in [0, 1, 31, 63, 64, 76] {
        let leaf = log.leaf(i).unwrap().to_vec();
        let proof = log.inclusion_proof(i, n).unwrap();
        for j in 0..proof.len() {
            for byte in 0..32 {
                for bit in 0..8 {
                    let mut p = proof.clone();
                    p[j] = flip(&p[j], byte, bit);
                    assert!(verify_inclusion(leaf_hash(&leaf), i, &head, &p).is_err());
                }
            }
        }
        for byte in 0..32 {
            let bad = TreeHead { size: n, root: flip(&head.root, byte, 3) };
            assert!(verify_inclusion(leaf_hash(&leaf), i, &bad, &proof).is_err());
        }
        for pos in 0..leaf.len() {
            let mut l = leaf.clone();
            l[pos] ^= 0x20;
            assert!(verify_inclusion(leaf_hash(&l), i, &head, &proof).is_err());
        }
        // wrong index, size, or proof length
        assert!(verify_inclusion(leaf_hash(&leaf), (i + 1) % n, &head, &proof).is_err());
        // (A wrong size with the right root can still verify when the path's
        // shape is the same: size and root are bound by the signed
        // checkpoint, not by the proof.)
        assert!(verify_inclusion(leaf_hash(&leaf), i, &head, &proof[1..]).is_err());
        let mut longer = proof.clone();
        longer.push(EMPTY_HASH);
        assert!(verify_inclusion(leaf_hash(&leaf), i, &head, &longer).is_err());
    }
    for m in [1, 2, 3, 32, 50, 64, 76] {
        let old = TreeHead { size: m, root: log.root_at(m).unwrap() };
        let proof = log.consistency_proof(m, n).unwrap();
        for j in 0..proof.len() {
            for byte in 0..32 {
                let mut p = proof.clone();
                p[j] = flip(&p[j], byte, (byte % 8) as u8);
                assert!(verify_consistency(&old, &head, &p).is_err(), "{m}: hash {j} byte {byte}");
            }
        }
        for byte in 0..32 {
            let bad_old = TreeHead { root: flip(&old.root, byte, 0), ..old };
            assert!(verify_consistency(&bad_old, &head, &proof).is_err());
            let bad_new = TreeHead { root: flip(&head.root, byte, 7), ..head };
            assert!(verify_consistency(&old, &bad_new, &proof).is_err());
        }
        if !proof.is_empty() {
            assert!(verify_consistency(&old, &head, &proof[1..]).is_err());
        }
    }
    let joined: Vec<u8> = log.consistency_proof(3, n).unwrap().iter().flat_map(|h| h.0).collect();
    assert_eq!(hashes_from_concatenated(&joined).unwrap(), log.consistency_proof(3, n).unwrap());
    assert!(hashes_from_concatenated(&joined[1..]).is_err());
    // the empty tree is a prefix of every tree, with an empty proof only
    let empty = TreeHead { size: 0, root: EMPTY_HASH };
    verify_consistency(&empty, &head, &[]).unwrap();
    assert!(verify_consistency(&empty, &head, &[EMPTY_HASH]).is_err());
    assert!(verify_consistency(&head, &empty, &[]).is_err());
}

/// Largest power of two smaller than `n` (n > 1), for sizes of any magnitude.
fn k_of_u64(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Length of RFC 9162 PATH(m, D[n]), from its definition.
fn path_len(m: u64, n: u64) -> usize {
    if n == 1 {
        return 0;
    }
    let k = k_of_u64(n);
    1 + if m < k { path_len(m, k) } else { path_len(m - k, n - k) }
}

/// Length of RFC 9162 SUBPROOF(m, D[n], b), from its definition.
fn subproof_len(m: u64, n: u64, b: bool) -> usize {
    if m == n {
        return usize::from(!b);
    }
    let k = k_of_u64(n);
    1 + if m <= k { subproof_len(m, k, b) } else { subproof_len(m - k, n - k, false) }
}

#[test]
fn proof_lengths_are_the_rfc_lengths() {
    let mut rng = StdRng::seed_from_u64(6);
    let log = log_of(300, &mut rng);
    for n in 0..=300u64 {
        for m in 0..n {
            let len = log.inclusion_proof(m, n).unwrap().len();
            assert_eq!((inclusion_proof_len(m, n), path_len(m, n)), (Some(len), len), "path {m} in {n}");
        }
        assert_eq!(inclusion_proof_len(n, n), None);
        for m in 0..=n {
            let len = log.consistency_proof(m, n).unwrap().len();
            assert_eq!(consistency_proof_len(m, n), Some(len), "{m}->{n}");
            if m > 0 {
                assert_eq!(subproof_len(m, n, true), len, "{m}->{n}");
            }
        }
        assert_eq!(consistency_proof_len(n + 1, n), None);
    }
    // Sizes of any magnitude, against the RFC's definition.
    for _ in 0..100_000 {
        let n = rng.random_range(1..=u64::MAX);
        let m = rng.random_range(0..n);
        assert_eq!(inclusion_proof_len(m, n), Some(path_len(m, n)), "path {m} in {n}");
        let m = m.max(1);
        assert_eq!(consistency_proof_len(m, n), Some(subproof_len(m, n, true)), "{m}->{n}");
    }
    for (m, n) in [(0, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 63, u64::MAX)] {
        assert_eq!(inclusion_proof_len(m, n), Some(path_len(m, n)), "path {m} in {n}");
    }
    for (m, n) in [(1, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 63, u64::MAX), (3, 1 << 63)] {
        assert_eq!(consistency_proof_len(m, n), Some(subproof_len(m, n, true)), "{m}->{n}");
    }
}

#[test]
fn a_proof_of_the_wrong_length_is_refused_before_hashing() {
    let mut rng = StdRng::seed_from_u64(7);
    let log = log_of(77, &mut rng);
    let head = log.head();
    let leaf = leaf_hash(log.leaf(5).unwrap());
    // A huge proof (a relay trying to cost the auditor time and memory) is
    // refused by its length, naming expected and actual lengths.
    let huge = vec![EMPTY_HASH; 1 << 20];
    let e = verify_inclusion(leaf, 5, &head, &huge).unwrap_err();
    assert!(matches!(e, ProtoError::InclusionProof { index: 5, size: 77, .. }), "{e}");
    assert!(e.to_string().contains("the proof has 1048576 hashes, expected 7"), "{e}");
    let old = TreeHead { size: 50, root: log.root_at(50).unwrap() };
    let e = verify_consistency(&old, &head, &huge).unwrap_err();
    let want = log.consistency_proof(50, 77).unwrap().len();
    assert!(e.to_string().contains(&format!("the proof has 1048576 hashes, expected {want}")), "{e}");
    // One hash too many or too few, and a proof between equal sizes.
    let mut longer = log.consistency_proof(50, 77).unwrap();
    longer.push(EMPTY_HASH);
    let e = verify_consistency(&old, &head, &longer).unwrap_err();
    assert!(e.to_string().contains(&format!("has {} hashes, expected {want}", want + 1)), "{e}");
    let e = verify_inclusion(leaf, 5, &head, &log.inclusion_proof(5, 77).unwrap()[1..]).unwrap_err();
    assert!(e.to_string().contains("has 6 hashes, expected 7"), "{e}");
    let e = verify_consistency(&head, &head, &[EMPTY_HASH]).unwrap_err();
    assert!(e.to_string().contains("has 1 hashes, expected 0"), "{e}");
    verify_consistency(&head, &head, &[]).unwrap();
}
