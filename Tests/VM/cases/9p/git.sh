# git on the share: init, add, commit, a second commit with a rename and a
# deletion, gc, and `git fsck --full` finding nothing wrong; the log and the
# tree read back as committed.
source /payload/cases/lib.sh
trap stop_virtiod EXIT
start_share
r=$share/repo
rm -rf "$r"
mkdir "$r" && cd "$r"
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.invalid GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.invalid
git init -q . || fail "git init failed"
cp -r /usr/share/doc/git/. doc/ 2>/dev/null || cp -r /usr/share/doc/systemd doc
for i in $(seq 50); do echo "line $i" > "f$i.txt"; done
git add -A || fail "git add failed"
git commit -q -m first || fail "git commit failed"
git mv f1.txt renamed.txt && git rm -q f2.txt && echo changed >> f3.txt
git commit -q -am second || fail "second commit failed"
git gc -q || fail "git gc failed"
out=$(git fsck --full 2>&1) || fail "git fsck failed: $out"
[ -z "$out" ] || fail "git fsck says: $(echo "$out" | head -n 3)"
[ "$(git log --oneline | wc -l)" = 2 ] || fail "log: $(git log --oneline)"
[ "$(git status --porcelain | wc -l)" = 0 ] || fail "a clean tree shows changes: $(git status --porcelain | head -n 3)"
files=$(git ls-files | wc -l)
git clone -q "$r" /tmp/clone || fail "cloning from the share failed"
[ "$(cd /tmp/clone && git ls-files | wc -l)" = "$files" ] || fail "the clone has $(cd /tmp/clone && git ls-files | wc -l) files, the repo $files"
echo "VIRTIOD-LOG 9p git: $files files, 2 commits, fsck clean"
cd /; rm -rf "$r" /tmp/clone
