package daemon

import (
	"strings"
	"testing"
)

func TestMountType_Mountinfo(t *testing.T) {
	const info = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
53 22 0:47 / /srv/erp rw,nosuid,nodev,relatime shared:30 - fuse.drfs drfs:erp rw,user_id=0,group_id=0,allow_other
54 22 0:48 / /srv/with\040space rw,relatime - fuse.drfs drfs:sp rw
55 53 0:49 / /srv/erp rw,relatime - tmpfs tmpfs rw
56 22 0:50 / /srv/short rw
`
	for _, tc := range []struct{ path, want string }{
		{"/", "ext4"},
		{"/srv/erp", "tmpfs"}, // the top of the stack
		{"/srv/with space", "fuse.drfs"},
		{"/srv/with\\040space", ""},
		{"/srv/short", ""}, // a line without a separator names no type
		{"/srv/none", ""},
	} {
		if got := mountType(strings.NewReader(info), tc.path); got != tc.want {
			t.Errorf("mountType(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestUnescapeMountinfo_Octal(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:         "/plain",
		`/a\040b`:        "/a b",
		`/tab\011nl\012`: "/tab\tnl\n",
		`/back\134slash`: `/back\slash`,
		`/short\04`:      `/short\04`,
		`/not\999octal`:  `/not\999octal`,
		`/end\`:          `/end\`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
