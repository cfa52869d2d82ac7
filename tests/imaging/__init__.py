"""Real disk images for tests, built on the fly by real tools and our own writers (nothing
committed, nothing mounted). Import from the module that builds what a test needs:

* :mod:`tests.imaging.tools`: running a tool, copying and patching image bytes, ``BASE_TIME``.
* :mod:`tests.imaging.trees`: source trees (the small merged-/usr Linux tree).
* :mod:`tests.imaging.ext4`: ext4 images (``mkfs.ext4 -d``, ``debugfs``), ``linux_image``.
* :mod:`tests.imaging.xattrs`: POSIX ACL and capability xattr values.
* :mod:`tests.imaging.xfs`: XFS images (protofiles, ``xfs_db``).
* :mod:`tests.imaging.lvm`: LVM2 physical volumes, volume groups, logical volumes.
* :mod:`tests.imaging.partitions`: GPT and MBR disks.
* :mod:`tests.imaging.linux_disk`: a Linux GPT disk with a separate /boot.
* :mod:`tests.imaging.fat`: FAT and exFAT images.
* :mod:`tests.imaging.ntfs`: NTFS images (mkntfs, libntfs-3g).
* :mod:`tests.imaging.vhd`: fixed and dynamic VHD containers.
* :mod:`tests.imaging.swap`: Linux swap areas.
* :mod:`tests.imaging.hives`: Windows registry hive files and transaction logs.
* :mod:`tests.imaging.windows`: Windows disks (system volume, hives, ESP / System Reserved).
* :mod:`tests.imaging.multidisk`: machines with several disks (/opt on a second disk, a volume
  group over two disks).
* :mod:`tests.imaging.windows_multidisk`: a Windows machine with a data disk (D: by
  ``SYSTEM\\MountedDevices``).
"""
