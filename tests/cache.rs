//! The download cache (`$FAULTLINE_CACHE`) under concurrency.
//!
//! Several callers that start on an empty cache at the same moment must each get a complete
//! hypervisor image: one fetches and unpacks, the others wait on the cache's lock and then find
//! the finished entry. Leftovers of a caller killed halfway (temporary folders and files) are
//! swept, never read. Each run gets a fresh cache folder of its own; the .deb is copied from the
//! user's cache when it is there (saves the download), else apt-get fetches it.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;

use xtask::workspace;
use xtask::xen::{ensure_hypervisor_in, XenVersion};

/// A fresh, empty cache folder under the target folder.
fn empty_cache(name: &str) -> PathBuf {
    let cache = workspace::target_dir().join("cache-tests").join(name);
    if cache.exists() {
        fs::remove_dir_all(&cache).unwrap();
    }
    fs::create_dir_all(&cache).unwrap();
    cache
}

/// Copies the pinned hypervisor .deb from the user's cache, when it holds one.
fn seed_deb(cache: &Path) {
    let from = workspace::cache_dir().join("debs");
    let Ok(entries) = fs::read_dir(&from) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name
            .to_string_lossy()
            .starts_with(&format!("{}_", XenVersion::V4_17.hypervisor_package()))
        {
            fs::create_dir_all(cache.join("debs")).unwrap();
            fs::copy(entry.path(), cache.join("debs").join(&name)).unwrap();
        }
    }
}

fn is_elf(path: &Path) -> bool {
    fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"\x7fELF"))
}

#[test]
fn parallel_unpacks_of_an_empty_cache_all_see_a_whole_image() {
    let cache = empty_cache("parallel");
    seed_deb(&cache);
    let callers: Vec<_> = (0..6)
        .map(|_| {
            let cache = cache.clone();
            thread::spawn(move || {
                ensure_hypervisor_in(&cache, XenVersion::V4_17).map_err(|error| error.to_string())
            })
        })
        .collect();
    let images: Vec<PathBuf> = callers
        .into_iter()
        .map(|caller| caller.join().unwrap().expect("ensure_hypervisor_in failed"))
        .map(|hypervisor| hypervisor.elf)
        .collect();
    let size = fs::metadata(&images[0]).unwrap().len();
    for image in &images {
        assert_eq!(image, &images[0], "every caller gets the same entry");
        assert!(is_elf(image), "{} is not a whole ELF image", image.display());
        assert_eq!(fs::metadata(image).unwrap().len(), size);
    }
    // One entry, no temporary names left behind.
    let roots: Vec<_> = fs::read_dir(cache.join("roots")).unwrap().flatten().collect();
    assert_eq!(roots.len(), 1, "one unpacked entry: {roots:?}");
    let boot = images[0].parent().unwrap();
    let leftovers: Vec<_> = fs::read_dir(boot)
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn leftovers_of_a_killed_caller_are_swept_not_read() {
    let cache = empty_cache("killed");
    seed_deb(&cache);
    // What a caller killed in the middle of an unpack and of a download leaves: a temporary
    // folder with half a tree, and a temporary download folder.
    let roots = cache.join("roots");
    fs::create_dir_all(roots.join(".xen.partial-999999-0/boot")).unwrap();
    fs::write(roots.join(".xen.partial-999999-0/boot/xen-4.17-amd64"), b"half").unwrap();
    fs::create_dir_all(cache.join("debs/.download.partial-999999-0")).unwrap();
    let hypervisor =
        ensure_hypervisor_in(&cache, XenVersion::V4_17).expect("ensure_hypervisor_in failed");
    assert!(is_elf(&hypervisor.elf));
    let names: Vec<String> = fs::read_dir(&roots)
        .unwrap()
        .chain(fs::read_dir(cache.join("debs")).unwrap())
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|name| !name.contains(".partial-")),
        "stale temporary entries were not swept: {names:?}"
    );
}
