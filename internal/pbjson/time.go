package pbjson

import (
	"strings"
	"time"
)

// Timestamps are RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, from
// 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, as in protojson.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
	maxNanos            = 999999999
	unixToCivilDays     = 719468 // days from 0000-03-01 to 1970-01-01
)

// appendTimestamp appends the quoted RFC 3339 form of a valid timestamp.
func appendTimestamp(out []byte, secs int64, nanos int32) []byte {
	days := secs / 86400
	rem := secs % 86400
	if rem < 0 {
		rem += 86400
		days--
	}
	y, m, d := civilFromDays(days)
	hh, mm, ss := int(rem/3600), int(rem/60%60), int(rem%60)

	out = append(out, '"',
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-',
		byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+hh/10), byte('0'+hh%10), ':',
		byte('0'+mm/10), byte('0'+mm%10), ':',
		byte('0'+ss/10), byte('0'+ss%10))
	if nanos != 0 {
		var frac [9]byte
		for i, n := 8, nanos; i >= 0; i-- {
			frac[i] = byte('0' + n%10)
			n /= 10
		}
		digits := 9
		switch {
		case nanos%1000000 == 0:
			digits = 3
		case nanos%1000 == 0:
			digits = 6
		}
		out = append(out, '.')
		out = append(out, frac[:digits]...)
	}
	return append(out, 'Z', '"')
}

// civilFromDays converts days since 1970-01-01 to a proleptic Gregorian
// date (Howard Hinnant's algorithm).
func civilFromDays(days int64) (year, month, day int) {
	z := days + unixToCivilDays
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if mp >= 10 {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return int(y), int(m), int(d)
}

// daysFromCivil is the inverse of civilFromDays.
func daysFromCivil(year, month, day int) int64 {
	y := int64(year)
	if month <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := int64(month) - 3
	if month <= 2 {
		mp = int64(month) + 9
	}
	doy := (153*mp+2)/5 + int64(day) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - unixToCivilDays
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// parseTimestamp parses a timestamp string as protojson does. The canonical
// form "2006-01-02T15:04:05[.fraction]Z" is parsed directly; anything else
// (offsets, unusual forms) goes through time.Parse like protojson.
func parseTimestamp(s []byte) (secs int64, nanos int32, ok bool) {
	if secs, nanos, ok := parseCanonicalTimestamp(s); ok {
		return secs, nanos, true
	}
	return parseTimestampSlow(string(s))
}

func parseCanonicalTimestamp(s []byte) (int64, int32, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") || s[len(s)-1] != 'Z' ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return 0, 0, false
	}
	num := func(b []byte) int {
		n := 0
		for _, c := range b {
			if !isDigit(c) {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(s[0:4]), num(s[5:7]), num(s[8:10])
	hour, minute, sec := num(s[11:13]), num(s[14:16]), num(s[17:19])
	if year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return 0, 0, false
	}
	var nanos int32
	switch frac := s[19 : len(s)-1]; {
	case len(frac) == 0:
	case len(frac) >= 2 && len(frac) <= 10 && frac[0] == '.':
		n := num(frac[1:])
		if n < 0 {
			return 0, 0, false
		}
		for i := len(frac) - 1; i < 9; i++ {
			n *= 10
		}
		nanos = int32(n)
	default:
		return 0, 0, false
	}
	secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec)
	if secs < minTimestampSeconds || secs > maxTimestampSeconds {
		return 0, 0, false
	}
	return secs, nanos, true
}

// parseTimestampSlow is protojson's timestamp parser.
func parseTimestampSlow(s string) (int64, int32, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, 0, false
	}
	secs := t.Unix()
	if secs < minTimestampSeconds || secs > maxTimestampSeconds {
		return 0, 0, false
	}
	i := strings.LastIndexByte(s, '.')
	j := strings.LastIndexAny(s, "Z-+")
	if i >= 0 && j >= i && j-i > len(".999999999") {
		return 0, 0, false
	}
	return secs, int32(t.Nanosecond()), true
}
