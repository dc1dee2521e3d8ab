//! The main time zone of a phone number's country, from its calling code:
//! what `quietHours.timeZone = "recipient"` means. The zones' rules (offsets,
//! daylight saving) come from the tz database (`chrono-tz`); this table only
//! names, per E.164 calling code, the zone most of that country's people
//! live in. Countries that span zones are listed in the README ("Quiet
//! hours"), with what is assumed for them; a calling code not listed here
//! is taken as UTC.

use chrono_tz::Tz;

use super::PhoneNumber;

/// The zone `number`'s quiet hours are counted in, and whether the country
/// was recognised (`false`: UTC was assumed).
pub fn recipient_zone(number: &PhoneNumber) -> (Tz, bool) {
    let digits = number.digits();
    // Kazakhstan shares +7 with Russia: its numbers are +76 and +77.
    if digits.starts_with("76") || digits.starts_with("77") {
        return (Tz::Asia__Almaty, true);
    }
    let code = number.country_code();
    match ZONES.binary_search_by(|(c, _)| c.cmp(&code)) {
        Ok(i) => (ZONES[i].1, true),
        Err(_) => (Tz::UTC, false),
    }
}

/// Calling code → main zone, sorted by code (as strings) for the search.
static ZONES: &[(&str, Tz)] = &[
    ("1", Tz::America__New_York),
    ("20", Tz::Africa__Cairo),
    ("211", Tz::Africa__Juba),
    ("212", Tz::Africa__Casablanca),
    ("213", Tz::Africa__Algiers),
    ("216", Tz::Africa__Tunis),
    ("218", Tz::Africa__Tripoli),
    ("220", Tz::Africa__Banjul),
    ("221", Tz::Africa__Dakar),
    ("222", Tz::Africa__Nouakchott),
    ("223", Tz::Africa__Bamako),
    ("224", Tz::Africa__Conakry),
    ("225", Tz::Africa__Abidjan),
    ("226", Tz::Africa__Ouagadougou),
    ("227", Tz::Africa__Niamey),
    ("228", Tz::Africa__Lome),
    ("229", Tz::Africa__PortoNovo),
    ("230", Tz::Indian__Mauritius),
    ("231", Tz::Africa__Monrovia),
    ("232", Tz::Africa__Freetown),
    ("233", Tz::Africa__Accra),
    ("234", Tz::Africa__Lagos),
    ("235", Tz::Africa__Ndjamena),
    ("236", Tz::Africa__Bangui),
    ("237", Tz::Africa__Douala),
    ("238", Tz::Atlantic__Cape_Verde),
    ("239", Tz::Africa__Sao_Tome),
    ("240", Tz::Africa__Malabo),
    ("241", Tz::Africa__Libreville),
    ("242", Tz::Africa__Brazzaville),
    ("243", Tz::Africa__Kinshasa),
    ("244", Tz::Africa__Luanda),
    ("245", Tz::Africa__Bissau),
    ("248", Tz::Indian__Mahe),
    ("249", Tz::Africa__Khartoum),
    ("250", Tz::Africa__Kigali),
    ("251", Tz::Africa__Addis_Ababa),
    ("252", Tz::Africa__Mogadishu),
    ("253", Tz::Africa__Djibouti),
    ("254", Tz::Africa__Nairobi),
    ("255", Tz::Africa__Dar_es_Salaam),
    ("256", Tz::Africa__Kampala),
    ("257", Tz::Africa__Bujumbura),
    ("258", Tz::Africa__Maputo),
    ("260", Tz::Africa__Lusaka),
    ("261", Tz::Indian__Antananarivo),
    ("262", Tz::Indian__Reunion),
    ("263", Tz::Africa__Harare),
    ("264", Tz::Africa__Windhoek),
    ("265", Tz::Africa__Blantyre),
    ("266", Tz::Africa__Maseru),
    ("267", Tz::Africa__Gaborone),
    ("268", Tz::Africa__Mbabane),
    ("269", Tz::Indian__Comoro),
    ("27", Tz::Africa__Johannesburg),
    ("290", Tz::Atlantic__St_Helena),
    ("291", Tz::Africa__Asmara),
    ("297", Tz::America__Aruba),
    ("298", Tz::Atlantic__Faroe),
    ("299", Tz::America__Nuuk),
    ("30", Tz::Europe__Athens),
    ("31", Tz::Europe__Amsterdam),
    ("32", Tz::Europe__Brussels),
    ("33", Tz::Europe__Paris),
    ("34", Tz::Europe__Madrid),
    ("350", Tz::Europe__Gibraltar),
    ("351", Tz::Europe__Lisbon),
    ("352", Tz::Europe__Luxembourg),
    ("353", Tz::Europe__Dublin),
    ("354", Tz::Atlantic__Reykjavik),
    ("355", Tz::Europe__Tirane),
    ("356", Tz::Europe__Malta),
    ("357", Tz::Asia__Nicosia),
    ("358", Tz::Europe__Helsinki),
    ("359", Tz::Europe__Sofia),
    ("36", Tz::Europe__Budapest),
    ("370", Tz::Europe__Vilnius),
    ("371", Tz::Europe__Riga),
    ("372", Tz::Europe__Tallinn),
    ("373", Tz::Europe__Chisinau),
    ("374", Tz::Asia__Yerevan),
    ("375", Tz::Europe__Minsk),
    ("376", Tz::Europe__Andorra),
    ("377", Tz::Europe__Monaco),
    ("378", Tz::Europe__San_Marino),
    ("380", Tz::Europe__Kyiv),
    ("381", Tz::Europe__Belgrade),
    ("382", Tz::Europe__Podgorica),
    ("383", Tz::Europe__Belgrade),
    ("385", Tz::Europe__Zagreb),
    ("386", Tz::Europe__Ljubljana),
    ("387", Tz::Europe__Sarajevo),
    ("389", Tz::Europe__Skopje),
    ("39", Tz::Europe__Rome),
    ("40", Tz::Europe__Bucharest),
    ("41", Tz::Europe__Zurich),
    ("420", Tz::Europe__Prague),
    ("421", Tz::Europe__Bratislava),
    ("423", Tz::Europe__Vaduz),
    ("43", Tz::Europe__Vienna),
    ("44", Tz::Europe__London),
    ("45", Tz::Europe__Copenhagen),
    ("46", Tz::Europe__Stockholm),
    ("47", Tz::Europe__Oslo),
    ("48", Tz::Europe__Warsaw),
    ("49", Tz::Europe__Berlin),
    ("500", Tz::Atlantic__Stanley),
    ("501", Tz::America__Belize),
    ("502", Tz::America__Guatemala),
    ("503", Tz::America__El_Salvador),
    ("504", Tz::America__Tegucigalpa),
    ("505", Tz::America__Managua),
    ("506", Tz::America__Costa_Rica),
    ("507", Tz::America__Panama),
    ("508", Tz::America__Miquelon),
    ("509", Tz::America__PortauPrince),
    ("51", Tz::America__Lima),
    ("52", Tz::America__Mexico_City),
    ("53", Tz::America__Havana),
    ("54", Tz::America__Argentina__Buenos_Aires),
    ("55", Tz::America__Sao_Paulo),
    ("56", Tz::America__Santiago),
    ("57", Tz::America__Bogota),
    ("58", Tz::America__Caracas),
    ("590", Tz::America__Guadeloupe),
    ("591", Tz::America__La_Paz),
    ("592", Tz::America__Guyana),
    ("593", Tz::America__Guayaquil),
    ("594", Tz::America__Cayenne),
    ("595", Tz::America__Asuncion),
    ("596", Tz::America__Martinique),
    ("597", Tz::America__Paramaribo),
    ("598", Tz::America__Montevideo),
    ("599", Tz::America__Curacao),
    ("60", Tz::Asia__Kuala_Lumpur),
    ("61", Tz::Australia__Sydney),
    ("62", Tz::Asia__Jakarta),
    ("63", Tz::Asia__Manila),
    ("64", Tz::Pacific__Auckland),
    ("65", Tz::Asia__Singapore),
    ("66", Tz::Asia__Bangkok),
    ("670", Tz::Asia__Dili),
    ("673", Tz::Asia__Brunei),
    ("674", Tz::Pacific__Nauru),
    ("675", Tz::Pacific__Port_Moresby),
    ("676", Tz::Pacific__Tongatapu),
    ("677", Tz::Pacific__Guadalcanal),
    ("678", Tz::Pacific__Efate),
    ("679", Tz::Pacific__Fiji),
    ("680", Tz::Pacific__Palau),
    ("682", Tz::Pacific__Rarotonga),
    ("685", Tz::Pacific__Apia),
    ("686", Tz::Pacific__Tarawa),
    ("687", Tz::Pacific__Noumea),
    ("689", Tz::Pacific__Tahiti),
    ("691", Tz::Pacific__Pohnpei),
    ("692", Tz::Pacific__Majuro),
    ("7", Tz::Europe__Moscow),
    ("81", Tz::Asia__Tokyo),
    ("82", Tz::Asia__Seoul),
    ("84", Tz::Asia__Ho_Chi_Minh),
    ("850", Tz::Asia__Pyongyang),
    ("852", Tz::Asia__Hong_Kong),
    ("853", Tz::Asia__Macau),
    ("855", Tz::Asia__Phnom_Penh),
    ("856", Tz::Asia__Vientiane),
    ("86", Tz::Asia__Shanghai),
    ("880", Tz::Asia__Dhaka),
    ("886", Tz::Asia__Taipei),
    ("90", Tz::Europe__Istanbul),
    ("91", Tz::Asia__Kolkata),
    ("92", Tz::Asia__Karachi),
    ("93", Tz::Asia__Kabul),
    ("94", Tz::Asia__Colombo),
    ("95", Tz::Asia__Yangon),
    ("960", Tz::Indian__Maldives),
    ("961", Tz::Asia__Beirut),
    ("962", Tz::Asia__Amman),
    ("963", Tz::Asia__Damascus),
    ("964", Tz::Asia__Baghdad),
    ("965", Tz::Asia__Kuwait),
    ("966", Tz::Asia__Riyadh),
    ("967", Tz::Asia__Aden),
    ("968", Tz::Asia__Muscat),
    ("970", Tz::Asia__Gaza),
    ("971", Tz::Asia__Dubai),
    ("972", Tz::Asia__Jerusalem),
    ("973", Tz::Asia__Bahrain),
    ("974", Tz::Asia__Qatar),
    ("975", Tz::Asia__Thimphu),
    ("976", Tz::Asia__Ulaanbaatar),
    ("977", Tz::Asia__Kathmandu),
    ("98", Tz::Asia__Tehran),
    ("992", Tz::Asia__Dushanbe),
    ("993", Tz::Asia__Ashgabat),
    ("994", Tz::Asia__Baku),
    ("995", Tz::Asia__Tbilisi),
    ("996", Tz::Asia__Bishkek),
    ("998", Tz::Asia__Tashkent),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_each_code_is_a_whole_calling_code() {
        assert!(
            ZONES.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, no repeats"
        );
        for (code, _) in ZONES {
            let number = PhoneNumber::parse(format!("+{code}99999999")).unwrap();
            assert_eq!(number.country_code(), *code, "{code} is a whole code");
        }
    }

    #[test]
    fn numbers_find_their_countrys_zone() {
        let zone = |n: &str| recipient_zone(&PhoneNumber::parse(n).unwrap());
        assert_eq!(zone("+34612345678"), (Tz::Europe__Madrid, true));
        assert_eq!(zone("+14155550123"), (Tz::America__New_York, true));
        assert_eq!(zone("+77011234567"), (Tz::Asia__Almaty, true));
        assert_eq!(zone("+79161234567"), (Tz::Europe__Moscow, true));
        assert_eq!(zone("+8821234567"), (Tz::UTC, false));
    }
}
