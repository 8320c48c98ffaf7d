"""The per-block kernel of integration: for each reflection's shoebox, the foreground and
background masks, the robust background, summation and centroid, and the learning or
fitting of its reference profile (DIALS's processor, one numba loop).

Results go to ``res`` (float: the ``R_*`` columns) and ``ires`` (int: the ``I_*``
columns, ``I_STATUS`` a bit set of ``S_*``); pixel values and flags come from the
sweep's pixel pool (``shoebox.pool_layout``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .background import estimate_background
from .profile_fitting import fit_profile, frame_cells, is_spike, pixel_cells, profile_at
from .shoebox import POOL_OVERLOAD, POOL_OWNED, POOL_VALID, corner_coords
from .summation import centroid_finish, summation

# result columns of the kernel
R_ISUM, R_VSUM, R_BG, R_BGSUM, R_BGVAR, R_IPRF, R_VPRF, R_CORR, R_X, R_Y, R_Z, R_VX, R_VY, R_VZ = range(14)
N_RES = 14
I_NVALID, I_NBG, I_NFG, I_STATUS, I_NSPIKE = range(5)
N_IRES = 5
SPIKE_MAX_PIXELS = 3  # most spike pixels profile fitting leaves out of one shoebox
S_SUM_OK, S_PRF_OK, S_OVERLOAD, S_FG_BAD, S_BG_FAIL, S_PRF_FAIL, S_CENTROID, S_LEARNED, S_PRF_TRIED = (
    1, 2, 4, 8, 16, 32, 64, 128, 256)


@njit(cache=True)
def process_shoeboxes(rows, pool, pool_mask, off, dbox, bbox, e1, e2, s1e, zeta, phi, centre,
                      origin, fast, slow, px, py, phi0, dphi, f0, delta_b, delta_m, n_sigma,
                      bg_alg, bg_c, bg_min_pixels, valid_fg_threshold, reject_sigma, max_reject, profiles, prof_ok, region, do_fit, learn, acc, acc_count,
                      nsub, G, R, w, res, ires):  # pragma: no cover (numba)
    """Background, summation, centroid and profile learning/fitting of shoeboxes ``rows``.

    ``dbox`` is the layout of each reflection's pixels in the pool, ``bbox`` the box
    processed (inside dbox). Profiles are (n_regions, G, G·G) fractions;
    ``acc`` accumulates learned references in the same shape.
    """
    maxc = 1
    maxv = 1
    maxp = 1
    maxz = 1
    for t in range(rows.shape[0]):
        r = rows[t]
        nx = bbox[r, 1] - bbox[r, 0]
        ny = bbox[r, 3] - bbox[r, 2]
        nz = bbox[r, 5] - bbox[r, 4]
        maxc = max(maxc, (nx + 1) * (ny + 1))
        maxv = max(maxv, nx * ny * nz)
        maxp = max(maxp, nx * ny)
        maxz = max(maxz, nz)
    cc1 = np.empty(maxc)
    cc2 = np.empty(maxc)
    fg2d = np.zeros(maxp, dtype=np.bool_)
    bgbuf = np.empty(maxv)
    dval = np.empty(maxv)
    pval = np.empty(maxv)
    ns2 = nsub * nsub
    pcell = np.zeros((maxp, ns2), dtype=np.int64)
    pfrac = np.zeros((maxp, ns2))
    pn = np.zeros(maxp, dtype=np.int64)
    parea = np.zeros(maxp)
    fw = np.zeros((maxz, G))
    fr = np.zeros((maxz, G))
    sig3 = 1.0 / n_sigma
    inv_db = 1.0 / delta_b
    inv_dm = 1.0 / delta_m
    default = np.zeros(3)
    for t in range(rows.shape[0]):
        r = rows[t]
        x0, x1, y0, y1, z0, z1 = bbox[r, 0], bbox[r, 1], bbox[r, 2], bbox[r, 3], bbox[r, 4], bbox[r, 5]
        dx0, dy0, dz0 = dbox[r, 0], dbox[r, 2], dbox[r, 4]
        dnx = dbox[r, 1] - dbox[r, 0]
        dny = dbox[r, 3] - dbox[r, 2]
        nx = x1 - x0
        ny = y1 - y0
        nz = z1 - z0
        nxc = nx + 1
        corner_coords(x0, x1, y0, y1, origin, fast, slow, px, py, e1[r], e2[r], s1e[r], cc1, cc2)
        for j in range(ny):
            for i in range(nx):
                a = j * nxc + i
                d1 = cc1[a] ** 2 + cc2[a] ** 2
                d2 = cc1[a + 1] ** 2 + cc2[a + 1] ** 2
                d3 = cc1[a + nxc] ** 2 + cc2[a + nxc] ** 2
                d4 = cc1[a + nxc + 1] ** 2 + cc2[a + nxc + 1] ** 2
                fg2d[j * nx + i] = min(min(d1, d2), min(d3, d4)) * inv_db * inv_db <= 1.0
        status = 0
        nbg = 0
        nfg = 0
        nvalid = 0
        nfg_all = 0
        sumfg = 0.0
        for k in range(nz):
            for j in range(ny):
                base = off[r] + ((z0 + k - dz0) * dny + (y0 + j - dy0)) * dnx + (x0 - dx0)
                for i in range(nx):
                    m = pool_mask[base + i]
                    if not (m & POOL_OWNED):
                        continue
                    isfg = fg2d[j * nx + i]
                    if isfg:
                        nfg_all += 1
                    if m & POOL_VALID:
                        nvalid += 1
                        v = pool[base + i]
                        if isfg:
                            nfg += 1
                            sumfg += v
                        else:
                            bgbuf[nbg] = v
                            nbg += 1
                    elif isfg:
                        status |= S_FG_BAD
                        if m & POOL_OVERLOAD:
                            status |= S_OVERLOAD
        ires[r, I_NVALID] = nvalid
        ires[r, I_NBG] = nbg
        ires[r, I_NFG] = nfg
        res[r, R_X] = centre[r, 0]
        res[r, R_Y] = centre[r, 1]
        res[r, R_Z] = centre[r, 2]
        if nbg < bg_min_pixels:
            ires[r, I_STATUS] = status | S_BG_FAIL
            continue
        B, conv = estimate_background(bgbuf, nbg, bg_alg, bg_c, 100)
        I, V, bsum, bvar = summation(sumfg, nfg, B, nbg)
        res[r, R_ISUM] = I
        res[r, R_VSUM] = V
        res[r, R_BG] = B
        res[r, R_BGSUM] = bsum
        res[r, R_BGVAR] = bvar
        if nfg > 0 and not (status & S_FG_BAD):
            status |= S_SUM_OK
        # centroid of the background-subtracted foreground
        sw = 0.0
        swx = 0.0
        swy = 0.0
        swz = 0.0
        swxx = 0.0
        swyy = 0.0
        swzz = 0.0
        for k in range(nz):
            zc = z0 + k + 0.5
            for j in range(ny):
                yc = y0 + j + 0.5
                base = off[r] + ((z0 + k - dz0) * dny + (y0 + j - dy0)) * dnx + (x0 - dx0)
                for i in range(nx):
                    if not fg2d[j * nx + i]:
                        continue
                    m = pool_mask[base + i]
                    if (m & POOL_OWNED) and (m & POOL_VALID):
                        wv = pool[base + i] - B
                        if wv <= 0.0:
                            continue
                        xc = x0 + i + 0.5
                        sw += wv
                        swx += wv * xc
                        swy += wv * yc
                        swz += wv * zc
                        swxx += wv * xc * xc
                        swyy += wv * yc * yc
                        swzz += wv * zc * zc
        default[0] = centre[r, 0]
        default[1] = centre[r, 1]
        default[2] = centre[r, 2]
        cx, cy, cz, vx, vy, vz, okc = centroid_finish(sw, swx, swy, swz, swxx, swyy, swzz, default)
        res[r, R_X] = cx
        res[r, R_Y] = cy
        res[r, R_Z] = cz
        res[r, R_VX] = vx
        res[r, R_VY] = vy
        res[r, R_VZ] = vz
        if okc:
            status |= S_CENTROID
        want_learn = learn[r] and (status & S_SUM_OK) != 0
        reg = region[r]
        # as DIALS: no profile fitting when too much of the foreground is masked
        # (a spot on a module gap would be extrapolated from its edge)
        fg_ok = nfg >= valid_fg_threshold * nfg_all
        want_fit = do_fit and prof_ok[reg] and fg_ok
        if do_fit and prof_ok[reg] and not fg_ok:
            status |= S_PRF_FAIL
        if not (want_learn or want_fit):
            ires[r, I_STATUS] = status
            continue
        for k in range(nz):
            pa = phi0 + (z0 + k - f0) * dphi
            pb = pa + dphi
            frame_cells(zeta[r] * (pa - phi[r]), zeta[r] * (pb - phi[r]), inv_dm, sig3, G, R, w, fw[k], fr[k])
        for j in range(ny):
            for i in range(nx):
                q = j * nx + i
                if want_learn or fg2d[q]:
                    nn, ar = pixel_cells(cc1, cc2, j, i, nxc, inv_db, nsub, G, R, w, pcell[q], pfrac[q])
                    pn[q] = nn
                    parea[q] = ar
                else:
                    pn[q] = 0
        cellw = 1.0 / (w * w)
        Ip = 0.0
        spikes_known = False
        if want_fit:
            status |= S_PRF_TRIED
            nfit = 0
            for k in range(nz):
                for j in range(ny):
                    base = off[r] + ((z0 + k - dz0) * dny + (y0 + j - dy0)) * dnx + (x0 - dx0)
                    for i in range(nx):
                        q = j * nx + i
                        if not fg2d[q]:
                            continue
                        m = pool_mask[base + i]
                        if not ((m & POOL_OWNED) and (m & POOL_VALID)):
                            continue
                        dval[nfit] = pool[base + i]
                        pval[nfit] = profile_at(pcell[q], pfrac[q], pn[q], fr[k], profiles[reg], G) * parea[q] * cellw
                        nfit += 1
            Ip, Vp, corr, okp, nrej, excess = fit_profile(dval, pval, nfit, B, nbg, 10, 1e-3, reject_sigma,
                                                          max_reject)
            spikes_known = okp and reject_sigma > 0.0
            if nrej > 0 and okp:
                # the spikes the fit left out are not the reflection's counts either
                ires[r, I_NSPIKE] = nrej
                res[r, R_ISUM] -= excess
                res[r, R_VSUM] = abs(res[r, R_ISUM]) + res[r, R_BGVAR]
            psum = 0.0
            for q in range(nfit):
                psum += pval[q]
            if okp and psum > 0.01 and Vp > 0.0:
                res[r, R_IPRF] = Ip
                res[r, R_VPRF] = Vp
                res[r, R_CORR] = corr
                status |= S_PRF_OK
            else:
                status |= S_PRF_FAIL
        if want_learn:
            # with a first profile fitted, spikes (zingers) are not learned into the references
            for k in range(nz):
                for j in range(ny):
                    base = off[r] + ((z0 + k - dz0) * dny + (y0 + j - dy0)) * dnx + (x0 - dx0)
                    for i in range(nx):
                        m = pool_mask[base + i]
                        if not ((m & POOL_OWNED) and (m & POOL_VALID)):
                            continue
                        q = j * nx + i
                        if spikes_known:
                            model = abs(B) + max(Ip, 0.0) * profile_at(pcell[q], pfrac[q], pn[q], fr[k],
                                                                      profiles[reg], G) * parea[q] * cellw
                            if is_spike(pool[base + i], model, Ip, reject_sigma):
                                continue
                        val = pool[base + i] - B
                        for s in range(pn[q]):
                            a = val * pfrac[q, s]
                            c = pcell[q, s]
                            for k3 in range(G):
                                if fw[k, k3] > 0.0:
                                    acc[reg, k3, c] += a * fw[k, k3]
            acc_count[reg] += 1
            status |= S_LEARNED
        ires[r, I_STATUS] = status
