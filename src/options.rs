//! Options by name: the one table of what `new Client(endpoint, options)` and
//! `new Server(endpoint, options)` take, each name with how its value lands in the core's
//! options. The create functions read exactly these names from the JS object (a cold path);
//! `clientOptionNames()` / `serverOptionNames()` export them, so a test holds index.d.ts to
//! this table. A new option is a row here and a field in the core's options.

use std::time::Duration;

use zerowire_core::curve::{Authorize, ClientCurve, ServerCurve};
use zerowire_core::peer::ServerUid;
use zerowire_core::{ClientOptions, Error, ServerOptions};

use crate::ffi::{Cx, Given, Thrown};

/// How one option's value is checked and stored.
type Apply<T> = fn(&mut T, Given) -> Result<(), Thrown>;

/// What a JS server asks beyond the core's options.
pub struct ServerBuild {
    pub core: ServerOptions,
    /// `encoding: 'buffer'`: bodies as Buffers instead of strings.
    pub buffers: bool,
    /// `authorize`, applied to `curve` once both are read.
    pub authorize: Option<Authorize>,
}

impl ServerBuild {
    /// The options once every row is read: `authorize` belongs to `curve`; without it only a
    /// function may decide (about ipc peers, by their credentials: checked at the bind).
    pub fn finish(mut self) -> Result<ServerOptions, Thrown> {
        match (self.authorize.take(), self.core.curve.as_mut()) {
            (None, _) => {}
            (Some(a), Some(curve)) => curve.authorize = a,
            (Some(Authorize::Host), None) => self.core.authorize_by_host = true,
            (Some(_), None) => return Err(Thrown::Type(
                "ERR_INVALID_ARG_VALUE",
                "options.authorize as a list of keys needs options.curve: only CURVE authenticates a client's key"
                    .into(),
            )),
        }
        Ok(self.core)
    }
}

pub const CLIENT: &[(&str, Apply<ClientOptions>)] = &[
    ("requestTimeoutMs", |o, v| {
        o.request_timeout = ms("requestTimeoutMs", v)?;
        Ok(())
    }),
    ("sendHighWaterMark", |o, v| {
        o.send_high_water_mark = count("sendHighWaterMark", v)?;
        Ok(())
    }),
    ("sendHighWaterBytes", |o, v| {
        o.send_high_water_bytes = count("sendHighWaterBytes", v)?;
        Ok(())
    }),
    ("maxMessageBytes", |o, v| {
        o.max_message_bytes = count("maxMessageBytes", v)?;
        Ok(())
    }),
    ("lingerMs", |o, v| {
        o.linger = ms("lingerMs", v)?;
        Ok(())
    }),
    ("reconnectIntervalMs", |o, v| {
        o.reconnect_interval = ms("reconnectIntervalMs", v)?;
        // Raising only the first interval should not trip over the default maximum (a
        // maximum given as well is applied after this row).
        o.reconnect_max_interval = o.reconnect_max_interval.max(o.reconnect_interval);
        Ok(())
    }),
    ("reconnectMaxIntervalMs", |o, v| {
        o.reconnect_max_interval = ms("reconnectMaxIntervalMs", v)?;
        Ok(())
    }),
    ("heartbeatIntervalMs", |o, v| {
        o.heartbeat_interval = ms("heartbeatIntervalMs", v)?;
        // A shorter interval alone keeps the default ratio of three missed pings (a timeout
        // given as well is applied after this row).
        o.heartbeat_timeout = o.heartbeat_interval * 3;
        Ok(())
    }),
    ("heartbeatTimeoutMs", |o, v| {
        o.heartbeat_timeout = ms("heartbeatTimeoutMs", v)?;
        Ok(())
    }),
    ("whenFull", |o, v| {
        o.drop_oldest = match v {
            Given::Text(t) if t == "refuse" => false,
            Given::Text(t) if t == "drop-oldest" => true,
            _ => {
                return Err(Thrown::Type(
                    "ERR_INVALID_ARG_VALUE",
                    r#"options.whenFull must be "refuse" or "drop-oldest""#.into(),
                ))
            }
        };
        Ok(())
    }),
    ("slowRequestMs", |o, v| {
        let Given::Number(n) = v else {
            return Err(Thrown::Range(
                "ERR_OUT_OF_RANGE",
                "options.slowRequestMs must be a number ≥ 0".into(),
            ));
        };
        let ms = ms("slowRequestMs", Given::Number(n))?;
        o.slow_request = (!ms.is_zero()).then_some(ms);
        Ok(())
    }),
    ("receiveHighWaterBytes", |o, v| {
        o.receive_high_water_bytes = count("receiveHighWaterBytes", v)?;
        Ok(())
    }),
    ("name", |o, v| {
        let Given::Text(name) = v else {
            return Err(Thrown::arg_type("options.name must be a string"));
        };
        o.name = Some(name);
        Ok(())
    }),
    ("curve", |o, v| {
        let fields = object("curve", v)?;
        o.curve = Some(ClientCurve {
            server_public_key: text_field("curve", &fields, "serverPublicKey")?.ok_or_else(
                || Thrown::arg_type("options.curve.serverPublicKey must be a string"),
            )?,
            public_key: text_field("curve", &fields, "publicKey")?,
            secret_key: text_field("curve", &fields, "secretKey")?,
        });
        Ok(())
    }),
    ("expectServerUid", |o, v| {
        o.expect_server_uid = match v {
            Given::Bool(false) => ServerUid::Any,
            Given::Number(_) => match u32::try_from(whole("expectServerUid", v)?) {
                Ok(uid) => ServerUid::Only(uid),
                Err(_) => {
                    return Err(Error::InvalidOption(
                        "options.expectServerUid must be a uid (0..=4294967295) or false".into(),
                    )
                    .into())
                }
            },
            _ => {
                return Err(Thrown::arg_type(
                    "options.expectServerUid must be a uid (a number) or false",
                ))
            }
        };
        Ok(())
    }),
];

pub const SERVER: &[(&str, Apply<ServerBuild>)] = &[
    ("sendHighWaterMark", |o, v| {
        o.core.send_high_water_mark = count("sendHighWaterMark", v)?;
        Ok(())
    }),
    ("sendHighWaterBytes", |o, v| {
        o.core.send_high_water_bytes = count("sendHighWaterBytes", v)?;
        Ok(())
    }),
    ("maxMessageBytes", |o, v| {
        o.core.max_message_bytes = count("maxMessageBytes", v)?;
        Ok(())
    }),
    ("lingerMs", |o, v| {
        o.core.linger = ms("lingerMs", v)?;
        Ok(())
    }),
    ("sniffBytes", |o, v| {
        o.core.sniff_bytes = count("sniffBytes", v)?;
        Ok(())
    }),
    ("socketMode", |o, v| {
        o.core.socket_mode = u32::try_from(whole("socketMode", v)?).unwrap_or(u32::MAX);
        Ok(())
    }),
    ("heartbeatTimeoutMs", |o, v| {
        o.core.heartbeat_timeout = ms("heartbeatTimeoutMs", v)?;
        Ok(())
    }),
    ("maxPendingRequests", |o, v| {
        o.core.max_pending_requests = count("maxPendingRequests", v)?;
        Ok(())
    }),
    ("pendingRequestTimeoutMs", |o, v| {
        o.core.pending_request_timeout = ms("pendingRequestTimeoutMs", v)?;
        Ok(())
    }),
    ("receiveHighWaterBytes", |o, v| {
        o.core.receive_high_water_bytes = count("receiveHighWaterBytes", v)?;
        Ok(())
    }),
    ("dropStuckClientAfterMs", |o, v| {
        let after = ms("dropStuckClientAfterMs", v)?;
        o.core.drop_stuck_client_after = (!after.is_zero()).then_some(after);
        Ok(())
    }),
    ("typeField", |o, v| match v {
        Given::Text(field) if !field.is_empty() => {
            o.core.type_field = field;
            Ok(())
        }
        _ => Err(Thrown::arg_type(
            "options.typeField must be a non-empty string",
        )),
    }),
    ("curve", |o, v| {
        let fields = object("curve", v)?;
        o.core.curve = Some(ServerCurve {
            secret_key: text_field("curve", &fields, "secretKey")?
                .ok_or_else(|| Thrown::arg_type("options.curve.secretKey must be a string"))?,
            public_key: text_field("curve", &fields, "publicKey")?,
            authorize: Authorize::AnyKey,
        });
        Ok(())
    }),
    ("authorize", |o, v| {
        o.authorize = Some(match v {
            Given::Function => Authorize::Host,
            Given::List(items) => Authorize::Keys(
                items
                    .into_iter()
                    .map(|k| match k {
                        Given::Text(k) => Ok(k),
                        _ => Err(Thrown::arg_type(
                            "options.authorize must hold public keys (Z85 strings)",
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                return Err(Thrown::arg_type(
                    "options.authorize must be an array of public keys or a function",
                ))
            }
        });
        Ok(())
    }),
    ("insecure", |o, v| {
        let Given::Bool(insecure) = v else {
            return Err(Thrown::arg_type("options.insecure must be a boolean"));
        };
        o.core.insecure = insecure;
        Ok(())
    }),
    ("encoding", |o, v| {
        o.buffers = match v {
            Given::Text(t) if t == "utf8" => false,
            Given::Text(t) if t == "buffer" => true,
            _ => {
                return Err(Thrown::Type(
                    "ERR_INVALID_ARG_VALUE",
                    "options.encoding must be 'utf8' or 'buffer'".into(),
                ))
            }
        };
        Ok(())
    }),
];

/// Reads every option of `table` given in the object argument `i` onto `target`, in the
/// table's order.
pub fn read<T>(
    cx: &Cx,
    i: usize,
    table: &[(&str, Apply<T>)],
    target: &mut T,
) -> Result<(), Thrown> {
    for (name, apply) in table {
        let given = cx.property(i, name);
        if given != Given::Absent {
            apply(target, given)?;
        }
    }
    Ok(())
}

/// The names of a table (for the tests that hold the typings to it).
pub fn names<T>(table: &[(&'static str, Apply<T>)]) -> Vec<&'static str> {
    table.iter().map(|(n, _)| *n).collect()
}

/// A non-negative integer option.
fn whole(name: &str, v: Given) -> Result<u64, Thrown> {
    let Given::Number(v) = v else {
        return Err(Thrown::arg_type(&format!(
            "options.{name} must be a number"
        )));
    };
    if !v.is_finite() {
        return Err(Error::InvalidOption(format!(
            "options.{name} must be a finite number, got {v}"
        ))
        .into());
    }
    if v < 0.0 || v.fract() != 0.0 || v > (1u64 << 53) as f64 {
        return Err(Error::InvalidOption(format!(
            "{name} must be a non-negative integer, got {v}"
        ))
        .into());
    }
    Ok(v as u64)
}

/// An object option's fields.
fn object(name: &str, v: Given) -> Result<Vec<(String, Given)>, Thrown> {
    match v {
        Given::Object(fields) => Ok(fields),
        _ => Err(Thrown::arg_type(&format!(
            "options.{name} must be an object"
        ))),
    }
}

/// Field `field` of object option `name`: a string, or absent.
fn text_field(
    name: &str,
    fields: &[(String, Given)],
    field: &str,
) -> Result<Option<String>, Thrown> {
    match fields.iter().find(|(n, _)| n == field).map(|(_, v)| v) {
        None | Some(Given::Absent) => Ok(None),
        Some(Given::Text(t)) => Ok(Some(t.clone())),
        Some(_) => Err(Thrown::arg_type(&format!(
            "options.{name}.{field} must be a string"
        ))),
    }
}

fn count(name: &str, v: Given) -> Result<usize, Thrown> {
    whole(name, v).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

fn ms(name: &str, v: Given) -> Result<Duration, Thrown> {
    whole(name, v).map(Duration::from_millis)
}
