package fulfillment

import "context"

// recordPage reads one page of records that a scan returns in id order
// after a page token. A token is bound to the filter that made it
// (filterKey); keep decides which scanned records the caller may see; at
// most maxListScan records are walked per page, so a page may come back
// short with a token that moves past what was scanned.
func recordPage[R any, P any](ctx context.Context, k *core, pageSizeReq int32, token string, filterKey []string,
	scan func(tx txn, afterID string, fn func(R) bool) error,
	id func(R) string, keep func(R) bool, proto func(R) P,
) ([]P, string, error) {
	size := pageSize(pageSizeReq, recordsPageDefault, recordsPageMax)
	filter := filterHash(filterKey...)
	after, err := decodePageToken(token, filter, 1)
	if err != nil {
		return nil, "", err
	}
	afterID := ""
	if after != nil {
		afterID = after[0]
	}
	var (
		out  []P
		next string
	)
	err = k.repo.view(ctx, func(tx txn) error {
		scanned, last := 0, ""
		return scan(tx, afterID, func(r R) bool {
			if len(out) == size || scanned == maxListScan {
				next = encodePageToken(filter, last)
				return false
			}
			scanned++
			last = id(r)
			if keep(r) {
				out = append(out, proto(r))
			}
			return true
		})
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}
