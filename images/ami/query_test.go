package ami

import (
	"net/url"
	"slices"
	"testing"

	"gureum/api"
)

func TestFilterFromQuery(t *testing.T) {
	q, _ := url.ParseQuery("image-id=ami-0123456789abcdef0,ami-0123456789abcdef1&owner=self&owner=gureum&executable-by=all&name=web*&is-public=false")
	f, err := FilterFromQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.ImageIDs, []string{"ami-0123456789abcdef0", "ami-0123456789abcdef1"}) ||
		!slices.Equal(f.Owners, []string{"self", "gureum"}) || !slices.Equal(f.ExecutableBy, []string{"all"}) ||
		f.Name != "web*" || f.IsPublic == nil || *f.IsPublic {
		t.Fatalf("filter %+v", f)
	}
	for _, bad := range []string{"owners=self", "is-public=maybe"} {
		q, _ := url.ParseQuery(bad)
		if _, err := FilterFromQuery(q); api.CodeOf(err) != api.CodeInvalidParameterValue {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
