#!/bin/bash
# shellcheck disable=SC2154  # moddir, initdir, systemdsystemunitdir: set by dracut
# dracut module of the e2e test OS: the glue Fedora CoreOS's own initramfs modules
# provide around Ignition, reduced to what bootplane's `fcos` install path touches.
#  - live boot (`coreos.live.rootfs_url=` on the kernel line): DHCP, fetch the rootfs
#    (a squashfs), mount it with a tmpfs overlay as /sysroot, then let Ignition apply
#    the live config from `ignition.config.url=`;
#  - live ISO boot (`coreos.liveiso=LABEL`): the rootfs from the ISO, and the config
#    embedded in it (/config.ign) as Ignition's user config;
#  - installed first boot (`ignition.firstboot` from GRUB): hand Ignition the config
#    coreos-installer wrote to the `boot` partition, and remove the first-boot stamp
#    once Ignition has applied it, so later boots never run Ignition again.

check() { return 0; }

depends() { echo ignition; }

install() {
    inst_multiple curl dhclient ip mount umount losetup cp rm mkdir cat grep sed sleep modprobe tr tail seq stat awk kill
    inst_script "$moddir/testos-dhcp-script" /usr/sbin/testos-dhcp-script
    inst_simple /etc/ssl/certs/ca-certificates.crt
    inst_script "$moddir/is-live-image" /usr/bin/is-live-image
    inst_script "$moddir/testos-live-root" /usr/sbin/testos-live-root
    inst_script "$moddir/testos-boot-partition" /usr/sbin/testos-boot-partition
    # Ignition relabels what it wrote when built with SELinux support (Debian's is);
    # the test OS has no SELinux policy, so setfiles accepts the list and does nothing.
    inst_script "$moddir/setfiles" /usr/sbin/setfiles
    local u
    for u in testos-live-root.service testos-user-config.service testos-firstboot-done.service; do
        inst_simple "$moddir/$u" "$systemdsystemunitdir/$u"
    done
    mkdir -p "$initdir/$systemdsystemunitdir/initrd-root-fs.target.wants" \
        "$initdir/$systemdsystemunitdir/ignition-complete.target.requires" \
        "$initdir/$systemdsystemunitdir/ignition-diskful.target.requires"
    ln_r "$systemdsystemunitdir/testos-live-root.service" "$systemdsystemunitdir/initrd-root-fs.target.wants/testos-live-root.service"
    ln_r "$systemdsystemunitdir/testos-user-config.service" "$systemdsystemunitdir/ignition-diskful.target.requires/testos-user-config.service"
    ln_r "$systemdsystemunitdir/testos-firstboot-done.service" "$systemdsystemunitdir/ignition-diskful.target.requires/testos-firstboot-done.service"
    instmods squashfs overlay loop virtio_net virtio_blk virtio_pci ext4 vfat isofs sr_mod cdrom ata_piix
}
