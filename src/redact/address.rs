//! Street-address detector (the street line: number + street name + type, unit included).
//!
//! Input: plain text. Output: `ADDRESS` [`Hit`]s covering the street line only (`500 Main
//! Street Apt. 4`, `Flat 2, Hanson Mountain`, `Hauptstraße 12`, `12, rue de la Paix`,
//! `Via Roma, 15`, `Calle Mayor 5 Piso 2`). City, postcode and country are not PII on their
//! own and are left alone. Rules are layouts, not lists of places: English house number +
//! capitalised words + a USPS/Royal Mail street type; Germanic/Dutch compound street names
//! ending in a street word + number; Romance street type first + name + number.

use regex::Regex;

use super::engine::{is_word, prev_char, Hit};
use super::PiiType;

const EN_TYPES: &str = "Alley|Avenue|Ave|Bend|Boulevard|Blvd|Branch|Bridge|Brook|Brooks|Burg|Burgs|Bypass|Camp|Canyon|Cape|Causeway|Center|Centre|Centers|Circle|Circles|Cir|Cliff|Cliffs|Close|Club|Common|Commons|Corner|Corners|Course|Court|Courts|Ct|Cove|Coves|Creek|Crescent|Crest|Crossing|Crossroad|Curve|Dale|Dam|Divide|Drive|Drives|Dr|Estate|Estates|Expressway|Extension|Extensions|Fall|Falls|Ferry|Field|Fields|Flat|Flats|Ford|Fords|Forest|Forge|Forges|Fork|Forks|Fort|Freeway|Garden|Gardens|Gateway|Glen|Glens|Green|Greens|Grove|Groves|Harbor|Harbors|Haven|Heights|Highway|Hwy|Hill|Hills|Hollow|Inlet|Island|Islands|Isle|Junction|Junctions|Key|Keys|Knoll|Knolls|Lake|Lakes|Land|Landing|Lane|Ln|Light|Lights|Loaf|Lock|Locks|Lodge|Loop|Mall|Manor|Manors|Meadow|Meadows|Mews|Mill|Mills|Mission|Motorway|Mount|Mountain|Mountains|Neck|Orchard|Oval|Overpass|Park|Parks|Parkway|Parkways|Pkwy|Pass|Passage|Path|Pike|Pine|Pines|Place|Pl|Plain|Plains|Plaza|Point|Points|Port|Ports|Prairie|Radial|Ramp|Ranch|Rapid|Rapids|Rest|Ridge|Ridges|River|Road|Roads|Rd|Route|Row|Rue|Run|Shoal|Shoals|Shore|Shores|Skyway|Spring|Springs|Spur|Spurs|Square|Squares|Sq|Station|Stravenue|Stream|Street|Streets|St|Summit|Terrace|Ter|Throughway|Trace|Track|Trafficway|Trail|Tunnel|Turnpike|Underpass|Union|Unions|Valley|Valleys|Via|Viaduct|View|Views|Village|Villages|Ville|Vista|Walk|Walks|Wall|Way|Ways|Well|Wells|Wharf|Yard";

pub(super) struct Addresses {
    english: Regex,
    germanic: Regex,
    french: Regex,
    romance: Regex,
}

fn re(p: &str) -> Regex {
    Regex::new(p).expect("built-in address regex compiles")
}

impl Addresses {
    pub(super) fn new() -> Self {
        let unit = r"(?:,? (?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#) ?[0-9]+[A-Za-z]?)?";
        Addresses {
            english: re(&format!(
                r"(?:(?:Flat|Studio|Apartment|Unit|Suite) [0-9]{{1,5}}[A-Za-z]?, (?:[A-Z][a-z]+ ){{1,3}}(?:{t})(?-u:\b)|[0-9]{{1,6}}[A-Za-z]? (?:[A-Z][a-z]+ ){{1,3}}(?:{t})(?-u:\b)\.?{u})",
                t = EN_TYPES,
                u = unit
            )),
            germanic: re(r"[A-ZÄÖÜ][\p{L}\-]*?(?:straße|strasse|str\.|Straße|Strasse|weg|Weg|platz|Platz|gasse|Gasse|allee|Allee|ring|Ring|damm|Damm|ufer|steig|pfad|markt|laan|straat|plein|gracht|dreef|pad|kade|singel|steeg|hof|dijk|baan|veld|park) [0-9]{1,4}[a-z]?(?:-[0-9]{1,4})?"),
            french: re(r"[0-9]{1,4}(?: ?(?:bis|ter))?,? (?:rue|avenue|boulevard|bd|chemin|impasse|place|allée|quai|route|cours|passage|square|voie|rond-point) (?:de la |de l'|du |des |de |d')?[\p{L}'\-]+(?: \p{Lu}[\p{L}'\-]+){0,3}"),
            romance: re(r"(?:Via|Viale|Piazza|Piazzale|Corso|Contrada|Incrocio|Stretto|Borgo|Largo|Vicolo|Rotonda|Canale|Strada|Vico|Lungomare|C\.|Calle|Avenida|Avda\.|Plaza|Paseo|Camino|Glorieta|Urbanización|Ronda|Rambla|Carretera|Cañada|Callejón|Pasaje|Vía|Acceso|Alameda|Travesía|Rua|Praça|Travessa) (?:de (?:la |los |las )?|del |da |do |dos )?\p{Lu}[\p{L}'\-]+(?: (?:de |del |di )?\p{Lu}[\p{L}'\-]+){0,3},? [0-9]{1,4}(?: (?:Piano|Appartamento|Interno|Scala|Piso|Puerta|Apt\.) [0-9]+)?"),
        }
    }

    pub(super) fn scan(&self, text: &str, out: &mut Vec<Hit>) {
        if !text.bytes().any(|c| c.is_ascii_digit()) {
            return;
        }
        for r in [&self.english, &self.germanic, &self.french, &self.romance] {
            for m in r.find_iter(text) {
                let p = prev_char(text, m.start());
                if is_word(p) || matches!(p, Some('.' | '-' | '/' | '#')) {
                    continue;
                }
                let end = m.end() - usize::from(m.as_str().ends_with(','));
                out.push(Hit::new(m.start(), end, PiiType::Address));
            }
        }
    }
}
