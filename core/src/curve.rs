//! CURVE for zerowire's sockets: the keys each wing is configured with, and who may connect
//! to a server.
//!
//! The mechanism itself (RFC 26/27) is the `zeromq` crate's (vendor/zeromq/CURVE.md). The
//! crate asks its authorizer once per connection, on that connection's task, after the client
//! proved its long-term key and before the peer joins the ROUTER. The authorizer made here
//! decides what can be decided there (a key list, or any key) and writes the key down under
//! the peer's routing identity in [`PeerRecords`]; the server engine reads it when the peer's
//! first message arrives, so every message it hands on carries the key it was sent with.
//! When the host decides (an `authorize` function in JS), the crate lets the peer in and the
//! engine holds its messages until the host has answered (`server/engine.rs`, `Awaiting`).

use std::collections::HashSet;
use std::sync::Arc;

use zeromq::{CurveKeyPair, CurvePeer, CurvePublicKey, CurveSecretKey, SocketOptions};

use crate::error::Error;
use crate::peer::PeerRecords;

/// Who may connect to a CURVE server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Authorize {
    /// Any client that proves a key (it is still authenticated: `ctx.publicKey`).
    #[default]
    AnyKey,
    /// Only these public keys (Z85).
    Keys(Vec<String>),
    /// The host decides per key; the peer's messages wait for its answer.
    Host,
}

/// A CURVE server's configuration: its long-term secret key (Z85) and who may connect.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ServerCurve {
    pub secret_key: String,
    /// Checked against the secret key's public half when given.
    pub public_key: Option<String>,
    pub authorize: Authorize,
}

impl std::fmt::Debug for ServerCurve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCurve")
            .field("authorize", &self.authorize)
            .finish_non_exhaustive()
    }
}

/// A CURVE client's configuration: the server's public key it trusts, and its own long-term
/// key pair (a fresh one for each client when `secret_key` is `None`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientCurve {
    pub server_public_key: String,
    pub public_key: Option<String>,
    pub secret_key: Option<String>,
}

impl std::fmt::Debug for ClientCurve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCurve")
            .field("server_public_key", &self.server_public_key)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

fn bad(what: String) -> Error {
    Error::InvalidOption(what)
}

fn public_key(name: &str, z85: &str) -> Result<CurvePublicKey, Error> {
    CurvePublicKey::from_z85(z85).map_err(|_| {
        bad(format!(
            "options.curve.{name} must be a Z85 key of 40 characters"
        ))
    })
}

fn secret_key(z85: &str) -> Result<CurveSecretKey, Error> {
    CurveSecretKey::from_z85(z85)
        .map_err(|_| bad("options.curve.secretKey must be a Z85 key of 40 characters".into()))
}

/// A new long-term key pair, `(public, secret)` in Z85.
pub fn keypair() -> (String, String) {
    let pair = CurveKeyPair::generate();
    (
        pair.public_key.to_z85(),
        pair.secret_key.to_z85().to_string(),
    )
}

impl ServerCurve {
    pub fn validate(&self) -> Result<(), Error> {
        let derived = secret_key(&self.secret_key)?.public_key();
        if let Some(given) = &self.public_key {
            if public_key("publicKey", given)? != derived {
                return Err(bad(
                    "options.curve.publicKey is not the public half of secretKey".into(),
                ));
            }
        }
        if let Authorize::Keys(keys) = &self.authorize {
            for key in keys {
                CurvePublicKey::from_z85(key).map_err(|_| {
                    bad(format!(
                        "options.authorize must hold Z85 public keys of 40 characters, got {key:?}"
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// Makes `options` a CURVE server's whose authorizer records each admitted peer's key (and,
    /// on ipc, its credentials) in `keys`.
    pub(crate) fn apply(&self, options: &mut SocketOptions, keys: &Arc<PeerRecords>) {
        let Ok(secret) = secret_key(&self.secret_key) else {
            return;
        };
        options.curve_server(secret);
        let allowed: Option<HashSet<[u8; 32]>> = match &self.authorize {
            Authorize::Keys(list) => Some(
                list.iter()
                    .filter_map(|k| CurvePublicKey::from_z85(k).ok())
                    .map(|k| *k.as_bytes())
                    .collect(),
            ),
            _ => None,
        };
        let approved = self.authorize != Authorize::Host;
        let keys = keys.clone();
        options.curve_authorizer(move |peer: &CurvePeer| {
            if allowed
                .as_ref()
                .is_some_and(|set| !set.contains(peer.public_key.as_bytes()))
            {
                return false;
            }
            keys.admit(
                peer.identity.clone().into(),
                Some(peer.public_key.to_z85().into()),
                peer.socket_type.as_str(),
                peer.credentials,
                approved,
            )
        });
    }
}

impl ClientCurve {
    pub fn validate(&self) -> Result<(), Error> {
        public_key("serverPublicKey", &self.server_public_key)?;
        match (&self.public_key, &self.secret_key) {
            (_, None) if self.public_key.is_some() => Err(bad(
                "options.curve.publicKey needs its secretKey (omit both for a fresh key pair)"
                    .into(),
            )),
            (given, Some(secret)) => {
                let derived = secret_key(secret)?.public_key();
                if let Some(given) = given {
                    if public_key("publicKey", given)? != derived {
                        return Err(bad(
                            "options.curve.publicKey is not the public half of secretKey".into(),
                        ));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn apply(&self, options: &mut SocketOptions) {
        let Ok(server) = CurvePublicKey::from_z85(&self.server_public_key) else {
            return;
        };
        let pair = match self.secret_key.as_deref().map(CurveSecretKey::from_z85) {
            Some(Ok(secret)) => CurveKeyPair::from_secret_key(secret),
            _ => CurveKeyPair::generate(),
        };
        options.curve_client(server, pair);
    }
}

/// A key pair for a client configured without one: made once per client, so its reconnects
/// present the same key.
pub(crate) fn with_client_keys(curve: &ClientCurve) -> ClientCurve {
    let mut curve = curve.clone();
    if curve.secret_key.is_none() {
        let (public, secret) = keypair();
        curve.public_key = Some(public);
        curve.secret_key = Some(secret);
    }
    curve
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_are_checked_and_derived() {
        let (public, secret) = keypair();
        let (server, _) = keypair();
        let ok = ClientCurve {
            server_public_key: server.clone(),
            public_key: Some(public.clone()),
            secret_key: Some(secret.clone()),
        };
        assert!(ok.validate().is_ok());
        let (other, _) = keypair();
        let mismatched = ClientCurve {
            public_key: Some(other),
            ..ok.clone()
        };
        assert!(mismatched.validate().is_err());
        let no_secret = ClientCurve {
            secret_key: None,
            ..ok.clone()
        };
        assert!(no_secret.validate().is_err());
        let short = ClientCurve {
            server_public_key: "abc".into(),
            ..ok
        };
        assert!(short.validate().is_err());
        let fresh = with_client_keys(&ClientCurve {
            server_public_key: server,
            ..Default::default()
        });
        assert!(fresh.validate().is_ok());
        assert_ne!(fresh.public_key, Some(public));
    }

    #[test]
    fn server_keys_are_checked() {
        let (public, secret) = keypair();
        let ok = ServerCurve {
            secret_key: secret,
            public_key: Some(public.clone()),
            authorize: Authorize::Keys(vec![public]),
        };
        assert!(ok.validate().is_ok());
        let (other, _) = keypair();
        let mismatched = ServerCurve {
            public_key: Some(other),
            ..ok.clone()
        };
        assert!(mismatched.validate().is_err());
        let bad_list = ServerCurve {
            authorize: Authorize::Keys(vec!["nope".into()]),
            ..ok.clone()
        };
        assert!(bad_list.validate().is_err());
        let bad_secret = ServerCurve {
            secret_key: "x".repeat(40),
            ..ok
        };
        assert!(bad_secret.validate().is_err());
    }
}
