//! Options by name: the one table of what `new Client(endpoint, options)` and
//! `new Server(endpoint, options)` take, each name with how its value lands in the core's
//! options. The create functions read exactly these names from the JS object (a cold path);
//! `clientOptionNames()` / `serverOptionNames()` export them, so a test holds index.d.ts to
//! this table. A new option is a row here and a field in the core's options.

use std::time::Duration;

use zerowire_core::{ClientOptions, Error, ServerOptions};

use crate::ffi::{Cx, Given, Thrown};

/// How one option's value is checked and stored.
type Apply<T> = fn(&mut T, Given) -> Result<(), Thrown>;

/// What a JS server asks beyond the core's options.
pub struct ServerBuild {
    pub core: ServerOptions,
    /// `encoding: 'buffer'`: bodies as Buffers instead of strings.
    pub buffers: bool,
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

fn count(name: &str, v: Given) -> Result<usize, Thrown> {
    whole(name, v).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

fn ms(name: &str, v: Given) -> Result<Duration, Thrown> {
    whole(name, v).map(Duration::from_millis)
}
