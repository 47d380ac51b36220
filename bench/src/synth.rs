//! Synthetic Prometheus text 0.0.4 bodies of a chosen size, deterministic:
//! shaped like an application's exposition (counters and gauges with a few
//! labels, one HELP and TYPE per family of 10 samples), or the hostile
//! shapes of issue 11 (as many lines as the line limit allows; one sample
//! per family, with no TYPE or HELP).

use std::fmt::Write;

/// A valid exposition of at least `target_bytes` (and at most one family more).
pub fn body(target_bytes: usize) -> Vec<u8> {
    let mut text = String::with_capacity(target_bytes + 2048);
    let mut family = 0usize;
    while text.len() < target_bytes {
        let (kind, unit) = if family.is_multiple_of(2) {
            ("counter", "_total")
        } else {
            ("gauge", "")
        };
        let name = format!("bench_app_metric_{family}{unit}");
        let _ = writeln!(text, "# HELP {name} Synthetic {kind} number {family}.");
        let _ = writeln!(text, "# TYPE {name} {kind}");
        for sample in 0..10 {
            let _ = writeln!(
                text,
                "{name}{{method=\"GET\",path=\"/api/v1/items/{sample}\",code=\"{}\"}} {}",
                200 + sample % 3,
                family * 1000 + sample * 37
            );
        }
        family += 1;
    }
    text.into_bytes()
}

/// `lines` samples of one gauge family filling about `target_bytes`, each
/// value offset by `seed` (two seeds give two versions of the same series).
pub fn many_lines(lines: usize, target_bytes: usize, seed: u64) -> Vec<u8> {
    let mut text = String::with_capacity(target_bytes + 4096);
    let _ = writeln!(text, "# TYPE bench_wide gauge");
    let name_len = "bench_wide{series=\"\"} 0000000000\n".len();
    let pad = (target_bytes / lines.max(1)).saturating_sub(name_len + 8);
    let padding = "p".repeat(pad);
    for line in 0..lines.saturating_sub(1) {
        let _ = writeln!(
            text,
            "bench_wide{{series=\"{line:07}{padding}\"}} {}",
            seed * 7 + line as u64
        );
    }
    text.into_bytes()
}

/// `families` one-sample families with no TYPE or HELP (`f_0000001 7`),
/// each value offset by `seed`.
pub fn one_sample_families(families: usize, seed: u64) -> Vec<u8> {
    let mut text = String::with_capacity(families * 24);
    for family in 0..families {
        let _ = writeln!(text, "bench_family_{family:07} {}", seed + family as u64);
    }
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_at_least_the_target_and_close_to_it() {
        for target in [1_000, 10_000, 1_000_000] {
            let body = body(target);
            assert!(body.len() >= target);
            assert!(body.len() < target + 2_000, "{} for {target}", body.len());
            assert!(body.ends_with(b"\n"));
        }
    }

    #[test]
    fn hostile_shapes_have_the_lines_asked_for() {
        let wide = many_lines(65_536, 4 << 20, 1);
        assert_eq!(wide.iter().filter(|&&b| b == b'\n').count(), 65_536);
        assert!(wide.len() <= 4 << 20, "{}", wide.len());
        assert!(wide.len() > 3 << 20, "{}", wide.len());
        assert_ne!(wide, many_lines(65_536, 4 << 20, 2));
        let families = one_sample_families(65_536, 0);
        assert_eq!(families.iter().filter(|&&b| b == b'\n').count(), 65_536);
    }
}
