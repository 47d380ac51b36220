//! Synthetic Prometheus text 0.0.4 bodies of a chosen size, deterministic,
//! shaped like an application's exposition (counters and gauges with a few
//! labels, one HELP and TYPE per family of 10 samples).

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
}
