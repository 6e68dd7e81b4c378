//! Displays: sockets, SDL xauth, D-Bus, and the render node plus DRI/Mesa block for GL.

use super::Cx;
use crate::rules::{GrantError, Perms, Scope};
use crate::xml::Element;

impl Cx<'_> {
    pub(super) fn graphics(&mut self, g: &Element, i: usize) -> Result<(), GrantError> {
        let kind = g.attr("type").unwrap_or("");
        let label = format!("graphics {kind} #{}", i + 1);
        if let Some(s) = g.attr_nonempty("socket") {
            self.grant(&label, s, Perms::RW, Scope::File)?;
        }
        for l in g.children_named("listen") {
            if l.attr("type") == Some("socket") {
                if let Some(s) = l.attr_nonempty("socket") {
                    self.grant(&label, s, Perms::RW, Scope::File)?;
                }
            }
        }
        if kind == "sdl" {
            match g.attr_nonempty("xauth") {
                Some(x) => self.grant(&label, x, Perms::R, Scope::File)?,
                None => self.warn(format!("{label}: no xauth attribute; nothing to grant")),
            }
        }
        if kind == "dbus" {
            if let Some(p) = g
                .attr_nonempty("address")
                .and_then(|a| a.strip_prefix("unix:path="))
            {
                let p = p.split(',').next().unwrap_or(p).to_string();
                self.grant(&label, &p, Perms::RW, Scope::File)?;
            }
        }
        let gl = g.child("gl");
        let gl_on = gl.is_some_and(|e| e.attr_yes("enable"));
        let explicit = gl
            .and_then(|e| e.attr_nonempty("rendernode"))
            .or_else(|| g.attr_nonempty("rendernode"));
        if let Some(node) = explicit {
            self.grant(&label, node, Perms::RW, Scope::File)?;
            self.needs_gl = true;
        } else if gl_on || kind == "egl-headless" {
            self.needs_gl = true;
            match self.host().first_render_node() {
                Some(n) => self.grant(&label, &n, Perms::RW, Scope::File)?,
                None => self.warn(format!(
                    "{label}: GL requested but no /dev/dri/renderD* on this host"
                )),
            }
        }
        Ok(())
    }
    /// The DRI/Mesa/EGL paths a GL-enabled display needs (libvirt's helper emits the same block).
    pub(super) fn gl_block(&mut self) {
        self.out
            .rules
            .notes
            .push("DRI/Mesa/(e)GL config and driver paths (GL display)".into());
        for (p, perms) in [
            ("/usr/lib{,32,64}/dri/*.so*", Perms::R.with(Perms::M)),
            ("/usr/lib/@{multiarch}/dri/*.so*", Perms::R.with(Perms::M)),
            ("/usr/lib/fglrx/dri/*.so*", Perms::R.with(Perms::M)),
            ("/etc/drirc", Perms::R),
            ("/usr/share/drirc.d/{,*.conf}", Perms::R),
            ("/etc/glvnd/egl_vendor.d/{,*}", Perms::R),
            ("/usr/share/glvnd/egl_vendor.d/{,*}", Perms::R),
            ("/usr/share/egl/egl_external_platform.d/", Perms::R),
            ("/usr/share/egl/egl_external_platform.d/*", Perms::R),
            ("/proc/modules", Perms::R),
            ("/proc/driver/nvidia/params", Perms::R),
            ("/dev/nvidiactl", Perms::RW),
            ("/dev/dri/", Perms::R),
            (
                "/sys/devices/**/{uevent,vendor,device,subsystem_vendor,subsystem_device,config,revision}",
                Perms::R,
            ),
        ] {
            self.out.rules.fixed(p, perms);
        }
    }
}
