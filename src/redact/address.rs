//! Street-address detector (the street line: number + street name + type, unit included).
//!
//! Input: plain text. Output: `ADDRESS` [`Hit`]s covering the street line only (`500 Main
//! Street Apt. 4`, `Flat 2, Hanson Mountain`, `Hauptstraße 12`, `12, rue de la Paix`,
//! `Via Roma, 15`, `Calle Mayor 5 Piso 2`). City, postcode and country are not PII on their
//! own and are left alone. Rules are layouts, not lists of places: English house number +
//! capitalised words + a USPS/Royal Mail street type; Germanic/Dutch compound street names
//! ending in a street word + number; Romance street type first + name + number.

use regex::Regex;

use super::PiiType;
use super::engine::{Hit, is_word, prev_char};

const EN_TYPES: &str = "Alley|Avenue|Ave|Bend|Boulevard|Blvd|Branch|Bridge|Brook|Brooks|Burg|Burgs|Bypass|Camp|Canyon|Cape|Causeway|Center|Centre|Centers|Circle|Circles|Cir|Cliff|Cliffs|Close|Club|Common|Commons|Corner|Corners|Course|Court|Courts|Ct|Cove|Coves|Creek|Crescent|Crest|Crossing|Crossroad|Curve|Dale|Dam|Divide|Drive|Drives|Dr|Estate|Estates|Expressway|Extension|Extensions|Fall|Falls|Ferry|Field|Fields|Flat|Flats|Ford|Fords|Forest|Forge|Forges|Fork|Forks|Fort|Freeway|Garden|Gardens|Gateway|Glen|Glens|Green|Greens|Grove|Groves|Harbor|Harbors|Haven|Heights|Highway|Hwy|Hill|Hills|Hollow|Inlet|Island|Islands|Isle|Junction|Junctions|Key|Keys|Knoll|Knolls|Lake|Lakes|Land|Landing|Lane|Ln|Light|Lights|Loaf|Lock|Locks|Lodge|Loop|Mall|Manor|Manors|Meadow|Meadows|Mews|Mill|Mills|Mission|Motorway|Mount|Mountain|Mountains|Neck|Orchard|Oval|Overpass|Park|Parks|Parkway|Parkways|Pkwy|Pass|Passage|Path|Pike|Pine|Pines|Place|Pl|Plain|Plains|Plaza|Point|Points|Port|Ports|Prairie|Radial|Ramp|Ranch|Rapid|Rapids|Rest|Ridge|Ridges|River|Road|Roads|Rd|Route|Row|Rue|Run|Shoal|Shoals|Shore|Shores|Skyway|Spring|Springs|Spur|Spurs|Square|Squares|Sq|Station|Stravenue|Stream|Street|Streets|St|Summit|Terrace|Ter|Throughway|Trace|Track|Trafficway|Trail|Tunnel|Turnpike|Underpass|Union|Unions|Valley|Valleys|Via|Viaduct|View|Views|Village|Villages|Ville|Vista|Walk|Walks|Wall|Way|Ways|Well|Wells|Wharf|Yard";

const GERMANIC: &[&str] = &[
    "straße", "strasse", "str.", "weg", "platz", "gasse", "allee", "ring", "damm", "ufer", "steig",
    "pfad", "markt", "laan", "straat", "plein", "gracht", "dreef", "pad", "kade", "singel",
    "steeg", "hof", "dijk", "baan", "veld", "park",
];

fn push(text: &str, s: usize, m: &str, out: &mut Vec<Hit>) {
    let p = prev_char(text, s);
    if is_word(p) || matches!(p, Some('.' | '-' | '/' | '#')) {
        return;
    }
    let end = s + m.len() - usize::from(m.ends_with(','));
    out.push(Hit::new(s, end, PiiType::Address));
}

/// Street words that open a Romance (Italian, Spanish, Portuguese) street line.
const ROMANCE_TYPES: &[&str] = &[
    "Via",
    "Viale",
    "Piazza",
    "Piazzale",
    "Corso",
    "Contrada",
    "Incrocio",
    "Stretto",
    "Borgo",
    "Largo",
    "Vicolo",
    "Rotonda",
    "Canale",
    "Strada",
    "Vico",
    "Lungomare",
    "C.",
    "Calle",
    "Avenida",
    "Avda.",
    "Plaza",
    "Paseo",
    "Camino",
    "Glorieta",
    "Urbanización",
    "Ronda",
    "Rambla",
    "Carretera",
    "Cañada",
    "Callejón",
    "Pasaje",
    "Vía",
    "Acceso",
    "Alameda",
    "Travesía",
    "Rua",
    "Praça",
    "Travessa",
];

/// French street words (the `french` regex's alternation).
const FR_TYPES: &[&str] = &[
    "rue",
    "avenue",
    "boulevard",
    "bd",
    "chemin",
    "impasse",
    "place",
    "allée",
    "quai",
    "route",
    "cours",
    "passage",
    "square",
    "voie",
    "rond-point",
];

/// Cheap necessary condition for the English layout after the number ending at `k`: an
/// optional letter, a space, then a capitalised word (`[A-Z][a-z]+`) and a space.
fn english_shape(b: &[u8], mut k: usize) -> bool {
    if b.get(k).is_some_and(u8::is_ascii_alphabetic) {
        k += 1;
    }
    if b.get(k) != Some(&b' ') || !b.get(k + 1).is_some_and(u8::is_ascii_uppercase) {
        return false;
    }
    let mut i = k + 2;
    while b.get(i).is_some_and(u8::is_ascii_lowercase) {
        i += 1;
    }
    i > k + 2 && b.get(i) == Some(&b' ')
}

/// Cheap necessary condition for the French layout after the number ending at `k`:
/// `[ ?bis|ter][,] ` then a street word.
fn french_shape(b: &[u8], mut k: usize) -> bool {
    let rest = |k: usize| b.get(k..).unwrap_or(&[]);
    if [&b" bis"[..], b" ter"]
        .iter()
        .any(|w| rest(k).starts_with(w))
    {
        k += 4;
    } else if [&b"bis"[..], b"ter"].iter().any(|w| rest(k).starts_with(w)) {
        k += 3;
    }
    if b.get(k) == Some(&b',') {
        k += 1;
    }
    b.get(k) == Some(&b' ')
        && FR_TYPES
            .iter()
            .any(|w| rest(k + 1).starts_with(w.as_bytes()))
}

pub(super) struct Addresses {
    english: Regex,
    germanic: Regex,
    french: Regex,
    romance: Regex,
    /// The Romance street words followed by a space: where the `romance` layout can start.
    romance_words: aho_corasick::AhoCorasick,
}

fn re(p: &str) -> Regex {
    Regex::new(p).expect("built-in address regex compiles")
}

impl Addresses {
    pub(super) fn new() -> Self {
        let unit = r"(?:,? (?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#) ?[0-9]+[A-Za-z]?)?";
        Addresses {
            english: re(&format!(
                r"^(?:(?:Flat|Studio|Apartment|Unit|Suite) [0-9]{{1,5}}[A-Za-z]?, (?:[A-Z][a-z]+ ){{1,3}}(?:{t})(?-u:\b)|[0-9]{{1,6}}[A-Za-z]? (?:[A-Z][a-z]+ ){{1,3}}(?:{t})(?-u:\b)\.?{u})",
                t = EN_TYPES,
                u = unit
            )),
            germanic: re(
                r"^[A-ZÄÖÜ][\p{L}\-]*?(?:straße|strasse|str\.|Straße|Strasse|weg|Weg|platz|Platz|gasse|Gasse|allee|Allee|ring|Ring|damm|Damm|ufer|steig|pfad|markt|laan|straat|plein|gracht|dreef|pad|kade|singel|steeg|hof|dijk|baan|veld|park) [0-9]{1,4}[a-z]?(?:[-/][0-9]{1,4})?",
            ),
            french: re(
                r"^[0-9]{1,4}(?: ?(?:bis|ter))?,? (?:rue|avenue|boulevard|bd|chemin|impasse|place|allée|quai|route|cours|passage|square|voie|rond-point) (?:de la |de l'|du |des |de |d')?[\p{L}'\-]+(?: \p{Lu}[\p{L}'\-]+){0,3}",
            ),
            romance: re(&format!(
                r"^(?:{}) (?:de (?:la |los |las )?|del |da |do |dos )?\p{{Lu}}[\p{{L}}'\-]+(?: (?:de |del |di )?\p{{Lu}}[\p{{L}}'\-]+){{0,3}},? [0-9]{{1,4}}(?: (?:Piano|Appartamento|Interno|Scala|Piso|Puerta|Apt\.) [0-9]+)?",
                ROMANCE_TYPES
                    .iter()
                    .map(|w| regex::escape(w))
                    .collect::<Vec<_>>()
                    .join("|")
            )),
            romance_words: aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(ROMANCE_TYPES.iter().map(|w| format!("{w} ")))
                .expect("built-in street words compile"),
        }
    }

    /// Street-type-first layouts (Italian, Spanish, Portuguese): the street words are found
    /// with one vectorised Aho-Corasick pass and the layout is matched, anchored, only there.
    /// (Run unanchored over the whole text, the regex engine chose a reverse-inner search
    /// that cost about a sixth of all redaction time.)
    pub(super) fn scan(&self, text: &str, out: &mut Vec<Hit>) {
        let mut next = 0;
        for m in self.romance_words.find_iter(text) {
            if m.start() < next {
                continue;
            }
            let before = out.len();
            self.anchored(&self.romance, text, m.start(), out);
            if let Some(h) = out.get(before) {
                next = h.end;
            }
        }
    }

    /// Layouts anchored on the house number starting at byte `d` (a digit run): the number
    /// first (`12 Main St`, `12, rue …`), or after a unit word (`Flat 3, …`) or a Germanic or
    /// Dutch street name (`Hauptstraße 12`). Anchored regexes on a short slice, tried only
    /// when the bytes around the number fit.
    pub(super) fn at_number(&self, text: &str, d: usize, out: &mut Vec<Hit>) {
        let b = text.as_bytes();
        let mut k = d;
        while k < b.len() && b[k].is_ascii_digit() {
            k += 1;
        }
        let after = &b[k..b.len().min(k + 4)];
        let upper_next = after.first() == Some(&b' ')
            && after.get(1).is_some_and(u8::is_ascii_uppercase)
            || after.first().is_some_and(u8::is_ascii_alphabetic) && after.get(1) == Some(&b' ');
        if upper_next && english_shape(b, k) {
            self.anchored(&self.english, text, d, out);
        }
        let lower_next = after.first() == Some(&b',')
            || after.first() == Some(&b' ') && after.get(1).is_some_and(u8::is_ascii_lowercase);
        if lower_next && french_shape(b, k) {
            self.anchored(&self.french, text, d, out);
        }
        if d >= 3 && b[d - 1] == b' ' {
            // the word before the number
            let mut ws = d - 1;
            while ws > 0
                && (b[ws - 1].is_ascii_alphabetic()
                    || b[ws - 1] >= 0x80
                    || matches!(b[ws - 1], b'-' | b'.'))
                && d - ws < 48
            {
                ws -= 1;
            }
            while ws < d && !text.is_char_boundary(ws) {
                ws += 1;
            }
            let word = &text.as_bytes()[ws..d - 1];
            let ends_ci = |suffix: &str| {
                word.len() >= suffix.len()
                    && word[word.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            };
            let unit_word = ["flat", "studio", "apartment", "unit", "suite"]
                .iter()
                .any(|w| word.eq_ignore_ascii_case(w.as_bytes()));
            if unit_word {
                self.anchored(&self.english, text, ws, out);
            } else if (word.first().is_some_and(u8::is_ascii_uppercase)
                || [&b"\xC3\x84"[..], b"\xC3\x96", b"\xC3\x9C"]
                    .iter()
                    .any(|u| word.starts_with(u)))
                && GERMANIC.iter().any(|s| ends_ci(s))
            {
                self.anchored(&self.germanic, text, ws, out);
            }
        }
    }

    fn anchored(&self, r: &Regex, text: &str, s: usize, out: &mut Vec<Hit>) {
        let mut lim = text.len().min(s + 160);
        while !text.is_char_boundary(lim) {
            lim -= 1;
        }
        if let Some(m) = text.get(s..lim).and_then(|t| r.find(t)) {
            push(text, s, m.as_str(), out);
        }
    }
}
