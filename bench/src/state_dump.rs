//! A Home Assistant `get_states`-like JSON document of about a given size, for the large-JSON
//! row: the answer to `{"type":"get_states"}` on HA's WebSocket API, an array of entity states
//! (entity_id, state, attributes, last_changed, last_reported, last_updated, context).
//!
//! Deterministic (a fixed-seed xorshift), so every run compresses the same. The values that
//! make real dumps compress less than a repeated template does are random here too: numeric
//! states, timestamps with microseconds, and the 26-character ULIDs of the contexts.

use std::fmt::Write as _;

/// The document's start, as HA's: `{"id":N,"type":"result",…`. The server puts each message's
/// own N after it, so that no two documents are equal, and they differ in their first bytes:
/// Lua 5.1 hashes a 2 MB string from ~32 sampled bytes, the last one always (`}` here), so
/// documents of one length share a hash, and interning compares each new one with the live ones
/// of that hash, byte by byte until they differ (an id at the end would make that a whole 2 MB
/// `memcmp` per live string).
pub const HEAD: &str = "{\"id\":";

/// xorshift64*: plenty for picking names and values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

const ROOMS: &[&str] = &[
    "Kitchen", "Living Room", "Bedroom", "Office", "Hallway", "Garage", "Basement", "Attic",
    "Bathroom", "Guest Room", "Patio", "Garden", "Küche", "Salle à manger",
];

/// What an entity is: HA domain, device class, unit, and how its state looks.
#[derive(Clone, Copy)]
enum Kind {
    Temperature,
    Humidity,
    Power,
    Energy,
    Battery,
    NodeStatus,
    Motion,
    Door,
    Light,
    Switch,
    Lock,
    Climate,
}

const KINDS: &[Kind] = &[
    Kind::Temperature,
    Kind::Humidity,
    Kind::Power,
    Kind::Energy,
    Kind::Battery,
    Kind::NodeStatus,
    Kind::Motion,
    Kind::Door,
    Kind::Light,
    Kind::Switch,
    Kind::Lock,
    Kind::Climate,
];

fn timestamp(rng: &mut Rng, out: &mut String) {
    let _ = write!(
        out,
        "\"2024-05-{:02}T{:02}:{:02}:{:02}.{:06}+00:00\"",
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1_000_000)
    );
}

/// A context id: a ULID, 10 characters of time (the first six shared by a day's events) and
/// 16 random ones, Crockford base32.
fn ulid(rng: &mut Rng, out: &mut String) {
    const B32: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    out.push_str("\"01HWX3");
    for _ in 0..20 {
        out.push(B32[rng.below(32) as usize] as char);
    }
    out.push('"');
}

/// One entity's state object.
fn entity(rng: &mut Rng, n: usize, out: &mut String) {
    let room = rng.pick(ROOMS);
    // As HA's slugify: transliterated, lower case, anything else an underscore.
    let slug: String = room
        .chars()
        .map(|c| match c {
            'à' => 'a',
            'ü' => 'u',
            c if c.is_ascii_alphanumeric() => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    let node = 2 + n % 230;
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let (domain, what, state, attrs): (&str, &str, String, String) = match kind {
        Kind::Temperature => (
            "sensor",
            "air_temperature",
            format!("{:.1}", 15.0 + rng.below(150) as f64 / 10.0),
            "\"state_class\":\"measurement\",\"unit_of_measurement\":\"°C\",\"device_class\":\"temperature\"".into(),
        ),
        Kind::Humidity => (
            "sensor",
            "humidity",
            format!("{}", 30 + rng.below(50)),
            "\"state_class\":\"measurement\",\"unit_of_measurement\":\"%\",\"device_class\":\"humidity\"".into(),
        ),
        Kind::Power => (
            "sensor",
            "electric_consumption_w",
            format!("{:.2}", rng.below(250_000) as f64 / 100.0),
            "\"state_class\":\"measurement\",\"unit_of_measurement\":\"W\",\"device_class\":\"power\"".into(),
        ),
        Kind::Energy => (
            "sensor",
            "electric_consumption_kwh",
            format!("{:.3}", rng.below(9_000_000) as f64 / 1000.0),
            "\"state_class\":\"total_increasing\",\"unit_of_measurement\":\"kWh\",\"device_class\":\"energy\"".into(),
        ),
        Kind::Battery => (
            "sensor",
            "battery_level",
            format!("{}", rng.below(101)),
            "\"state_class\":\"measurement\",\"unit_of_measurement\":\"%\",\"device_class\":\"battery\"".into(),
        ),
        Kind::NodeStatus => (
            "sensor",
            "node_status",
            rng.pick(&["alive", "alive", "alive", "asleep", "dead"]).into(),
            "\"device_class\":\"enum\",\"options\":[\"unknown\",\"asleep\",\"awake\",\"dead\",\"alive\"]".into(),
        ),
        Kind::Motion => (
            "binary_sensor",
            "motion_detection",
            rng.pick(&["on", "off", "off"]).into(),
            "\"device_class\":\"motion\"".into(),
        ),
        Kind::Door => (
            "binary_sensor",
            "window_door_is_open",
            rng.pick(&["on", "off", "off", "off"]).into(),
            "\"device_class\":\"door\"".into(),
        ),
        Kind::Light => {
            let on = rng.below(3) == 0;
            let brightness = if on { format!("{}", 1 + rng.below(255)) } else { "null".into() };
            (
                "light",
                "dimmer",
                if on { "on" } else { "off" }.into(),
                format!(
                    "\"supported_color_modes\":[\"brightness\"],\"color_mode\":{},\"brightness\":{brightness},\"supported_features\":32",
                    if on { "\"brightness\"" } else { "null" }
                ),
            )
        }
        Kind::Switch => ("switch", "outlet", rng.pick(&["on", "off"]).into(), "\"device_class\":\"outlet\"".into()),
        Kind::Lock => (
            "lock",
            "door_lock",
            rng.pick(&["locked", "locked", "unlocked"]).into(),
            "\"supported_features\":0".into(),
        ),
        Kind::Climate => (
            "climate",
            "thermostat",
            rng.pick(&["heat", "off", "auto"]).into(),
            format!(
                "\"hvac_modes\":[\"off\",\"heat\",\"auto\"],\"min_temp\":7,\"max_temp\":35,\"target_temp_step\":0.5,\"current_temperature\":{:.1},\"temperature\":{:.1},\"supported_features\":385",
                16.0 + rng.below(80) as f64 / 10.0,
                18.0 + rng.below(8) as f64 / 2.0
            ),
        ),
    };
    let title: String = what
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ");
    let _ = write!(
        out,
        "{{\"entity_id\":\"{domain}.{slug}_node_{node}_{what}_{n}\",\"state\":\"{state}\",\"attributes\":{{{attrs},\"friendly_name\":\"{room} Node {node} {title}\"}},\"last_changed\":"
    );
    timestamp(rng, out);
    out.push_str(",\"last_reported\":");
    timestamp(rng, out);
    out.push_str(",\"last_updated\":");
    timestamp(rng, out);
    out.push_str(",\"context\":{\"id\":");
    ulid(rng, out);
    out.push_str(",\"parent_id\":null,\"user_id\":null}}");
}

/// The document after `HEAD` and the id: `,"type":"result","success":true,"result":[…]}`, with
/// entity states until the whole is `size` bytes or a little more.
pub fn body(size: usize) -> String {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = String::with_capacity(size + 1024);
    out.push_str(",\"type\":\"result\",\"success\":true,\"result\":[");
    let mut n = 0;
    while HEAD.len() + 1 + out.len() + 2 < size {
        if n > 0 {
            out.push(',');
        }
        entity(&mut rng, n, &mut out);
        n += 1;
    }
    out.push_str("]}");
    out
}
