//! Constant-velocity Kalman filter over a box's centre, aspect ratio and height, the state
//! SORT and ByteTrack use: `[cx, cy, a, h, vcx, vcy, va, vh]`, measured `[cx, cy, a, h]`.
//!
//! Time steps are variable (sampling by timestamp, motion gating, dropped frames), so the
//! transition and the process noise scale with `dt` in seconds. Noise is proportional to the
//! box height, as in ByteTrack, so a far-away small object and a near large one behave alike.

// Index loops are the clearest way to write small fixed-size matrix algebra.
#![allow(clippy::needless_range_loop)]

const STD_POSITION: f32 = 1.0 / 20.0;
const STD_VELOCITY: f32 = 1.0 / 160.0;
/// ByteTrack's noise constants are per frame at about 30 fps; ours are per second.
const REFERENCE_FPS: f32 = 30.0;

type Vec8 = [f32; 8];
type Mat8 = [[f32; 8]; 8];

#[derive(Debug, Clone)]
pub struct Kalman {
    x: Vec8,
    p: Mat8,
}

/// `[cx, cy, a, h]`.
pub type Measurement = [f32; 4];

impl Kalman {
    pub fn new(z: Measurement) -> Kalman {
        let h = z[3].max(1e-6);
        let mut x = [0.0; 8];
        x[..4].copy_from_slice(&z);
        let std = [
            2.0 * STD_POSITION * h,
            2.0 * STD_POSITION * h,
            1e-2,
            2.0 * STD_POSITION * h,
            10.0 * STD_VELOCITY * h * REFERENCE_FPS,
            10.0 * STD_VELOCITY * h * REFERENCE_FPS,
            1e-5,
            10.0 * STD_VELOCITY * h * REFERENCE_FPS,
        ];
        let mut p = [[0.0; 8]; 8];
        for i in 0..8 {
            p[i][i] = std[i] * std[i];
        }
        Kalman { x, p }
    }

    /// The predicted measurement part of the state.
    pub fn state(&self) -> Measurement {
        [self.x[0], self.x[1], self.x[2], self.x[3]]
    }

    /// Velocity of the centre, per second.
    pub fn velocity(&self) -> [f32; 2] {
        [self.x[4], self.x[5]]
    }

    /// Advances the state by `dt` seconds.
    pub fn predict(&mut self, dt: f32) {
        if dt <= 0.0 {
            return;
        }
        let h = self.x[3].max(1e-6);
        for i in 0..4 {
            self.x[i] += self.x[i + 4] * dt;
        }
        // P = F P F^T with F = [[I, dt I], [0, I]].
        let mut fp = self.p;
        for i in 0..4 {
            for j in 0..8 {
                fp[i][j] += dt * self.p[i + 4][j];
            }
        }
        let mut fpf = fp;
        for i in 0..8 {
            for j in 0..4 {
                fpf[i][j] += dt * fp[i][j + 4];
            }
        }
        let steps = dt * REFERENCE_FPS;
        let q = [
            STD_POSITION * h,
            STD_POSITION * h,
            1e-2,
            STD_POSITION * h,
            STD_VELOCITY * h * REFERENCE_FPS,
            STD_VELOCITY * h * REFERENCE_FPS,
            1e-5,
            STD_VELOCITY * h * REFERENCE_FPS,
        ];
        for i in 0..8 {
            fpf[i][i] += q[i] * q[i] * steps;
        }
        self.p = fpf;
    }

    /// Corrects the state with a measured box.
    pub fn update(&mut self, z: Measurement) {
        let h = self.x[3].max(1e-6);
        let r = [STD_POSITION * h, STD_POSITION * h, 1e-1, STD_POSITION * h];
        // S = H P H^T + R: the top-left 4x4 block of P plus R.
        let mut s = [[0.0f32; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = self.p[i][j];
            }
            s[i][i] += r[i] * r[i];
        }
        let Some(s_inv) = invert4(&s) else {
            // Degenerate covariance: restart from the measurement rather than diverge.
            *self = Kalman::new(z);
            return;
        };
        // K = P H^T S^-1: an 8x4 matrix.
        let mut k = [[0.0f32; 4]; 8];
        for i in 0..8 {
            for j in 0..4 {
                k[i][j] = (0..4).map(|m| self.p[i][m] * s_inv[m][j]).sum();
            }
        }
        let innovation: [f32; 4] = std::array::from_fn(|i| z[i] - self.x[i]);
        for i in 0..8 {
            self.x[i] += (0..4).map(|j| k[i][j] * innovation[j]).sum::<f32>();
        }
        // P = P - K H P: subtract K times the top four rows of P.
        let top = self.p;
        for i in 0..8 {
            for j in 0..8 {
                self.p[i][j] -= (0..4).map(|m| k[i][m] * top[m][j]).sum::<f32>();
            }
        }
    }
}

/// Inverse of a 4x4 matrix by Gauss-Jordan elimination with partial pivoting.
fn invert4(m: &[[f32; 4]; 4]) -> Option<[[f32; 4]; 4]> {
    let mut a = *m;
    let mut inv = [[0.0f32; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..4 {
        let pivot = (col..4).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for j in 0..4 {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for row in 0..4 {
            if row != col {
                let f = a[row][col];
                for j in 0..4 {
                    a[row][j] -= f * a[col][j];
                    inv[row][j] -= f * inv[col][j];
                }
            }
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_of_a_diagonal_and_a_full_matrix() {
        let m = [
            [2.0, 0.0, 0.0, 0.0],
            [0.0, 4.0, 0.0, 0.0],
            [0.0, 0.0, 5.0, 0.0],
            [0.0, 0.0, 0.0, 10.0],
        ];
        let inv = invert4(&m).unwrap();
        assert!((inv[1][1] - 0.25).abs() < 1e-6);
        let m = [
            [4.0, 7.0, 2.0, 3.0],
            [0.0, 5.0, 0.0, 1.0],
            [1.0, 0.0, 3.0, 0.0],
            [2.0, 1.0, 0.0, 6.0],
        ];
        let inv = invert4(&m).unwrap();
        for i in 0..4 {
            for j in 0..4 {
                let v: f32 = (0..4).map(|k| m[i][k] * inv[k][j]).sum();
                assert!(
                    (v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-4,
                    "{i},{j}: {v}"
                );
            }
        }
        assert!(invert4(&[[0.0; 4]; 4]).is_none());
    }

    #[test]
    fn learns_a_constant_velocity_and_predicts_through_a_gap() {
        // A box moving right at 0.1 of the picture per second, measured at 5 Hz.
        let mut kf = Kalman::new([0.1, 0.5, 1.0, 0.2]);
        for step in 1..=20 {
            kf.predict(0.2);
            kf.update([0.1 + 0.02 * step as f32, 0.5, 1.0, 0.2]);
        }
        assert!(
            (kf.velocity()[0] - 0.1).abs() < 0.01,
            "vx {:?}",
            kf.velocity()
        );
        // One second without measurements: the prediction keeps moving.
        kf.predict(1.0);
        assert!((kf.state()[0] - 0.6).abs() < 0.02, "cx {:?}", kf.state());
        assert!((kf.state()[1] - 0.5).abs() < 0.01);
    }

    #[test]
    fn a_still_box_stays_put() {
        let mut kf = Kalman::new([0.5, 0.5, 0.5, 0.3]);
        for _ in 0..50 {
            kf.predict(0.2);
            kf.update([0.5, 0.5, 0.5, 0.3]);
        }
        kf.predict(10.0);
        assert!((kf.state()[0] - 0.5).abs() < 1e-3);
    }
}
