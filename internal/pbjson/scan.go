package pbjson

// plainLen returns the length of the longest prefix of s made of bytes that a
// JSON string holds as they are, the same in the input and the output:
// printable ASCII other than the quote and the backslash. It looks at eight
// bytes at a time; most strings are plain throughout.
func plainLen(s string) int {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		q := x ^ ('"' * ones)
		b := x ^ ('\\' * ones)
		special := x&high | // non-ASCII
			(x-0x20*ones)&^x&high | // control characters
			(q-ones)&^q&high | // quotes
			(b-ones)&^b&high // backslashes
		if special != 0 {
			break
		}
	}
	for ; i < len(s) && plain[s[i]]; i++ {
	}
	return i
}
