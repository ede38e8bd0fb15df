package rollout

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"time"
)

// revisionFile names the file, in the flake's directory of the shipped
// tree, that holds the revision: the flake's configurationRevision is read
// from the nearest one at or above it (flakes shipped as plain directories
// have no self.rev).
const revisionFile = ".nest-revision"

// checkSource makes sure src holds a flake at flakeDir.
func checkSource(src fs.FS, flakeDir string) error {
	if src == nil {
		return errors.New("no source tree to ship")
	}
	f := path.Join(flakeDir, "flake.nix")
	if _, err := fs.Stat(src, f); err != nil {
		return fmt.Errorf("the source tree has no %s: %w (is the flake directory right?)", f, err)
	}
	return nil
}

// writeTar writes src as a tar stream to w, with a .nest-revision file
// holding rev in flakeDir (replacing one the tree may hold). Regular files
// keep their permission bits, symlinks their targets (from fs.ReadLinkFS,
// or the file's content for trees that store links as git does); other
// files (submodules, devices) are left out.
func writeTar(w io.Writer, src fs.FS, flakeDir, rev string) error {
	tw := tar.NewWriter(w)
	revPath := path.Join(flakeDir, revisionFile)
	mtime := time.Unix(0, 0)
	err := fs.WalkDir(src, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == "." || name == revPath {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, ModTime: mtime, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
		switch mode := info.Mode(); {
		case mode.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
			return tw.WriteHeader(hdr)
		case mode&fs.ModeSymlink != 0:
			target, err := readLink(src, name)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
			return tw.WriteHeader(hdr)
		case mode.IsRegular():
			data, err := fs.ReadFile(src, name)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, int64(len(data)), int64(mode.Perm()|0o644)
			if mode.Perm()&0o111 != 0 {
				hdr.Mode |= 0o111
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		default:
			return nil
		}
	})
	if err != nil {
		return fmt.Errorf("tar the source: %w", err)
	}
	body := []byte(rev + "\n")
	if err := tw.WriteHeader(&tar.Header{Name: revPath, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: mtime, Format: tar.FormatPAX, Uname: "root", Gname: "root"}); err != nil {
		return err
	}
	if _, err := tw.Write(body); err != nil {
		return err
	}
	return tw.Close()
}

func readLink(src fs.FS, name string) (string, error) {
	if rl, ok := src.(fs.ReadLinkFS); ok {
		return rl.ReadLink(name)
	}
	b, err := fs.ReadFile(src, name)
	return string(b), err
}
