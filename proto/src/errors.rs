//! How a failed gRPC call or connection is worded in logs and errors:
//! tonic's transport errors say little alone ("transport error"), their
//! sources say why. Used by the peer transport and by `oxcdctl`.

/// An error and its sources, joined with ": ". A source whose text the
/// message already contains (hyper repeats its cause) is left out.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let text = src.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_skips_repeated_sources() {
        #[derive(Debug)]
        struct Wrap(&'static str, Option<Box<Wrap>>);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|w| w as _)
            }
        }
        let refused = Wrap("connection refused", None);
        let connect = Wrap(
            "tcp connect error: connection refused",
            Some(Box::new(refused)),
        );
        let top = Wrap("transport error", Some(Box::new(connect)));
        assert_eq!(
            error_chain(&top),
            "transport error: tcp connect error: connection refused"
        );
    }
}
