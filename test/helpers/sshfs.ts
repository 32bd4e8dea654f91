/** One sshfs export per test file: a private sshd on loopback, its export mounted `mounts` times. */
import { SshfsExport } from '../../tools/cluster/sshfs';

export function useSshfs(mounts: number): () => SshfsExport {
  let exp: SshfsExport | null = null;
  beforeAll(async () => {
    if (!SshfsExport.available()) {
      throw new Error('sshfs harness needs sshfs, /usr/sbin/sshd, ssh-keygen and /dev/fuse (apt-get install sshfs openssh-server)');
    }
    exp = await SshfsExport.start({ mounts });
  }, 60000);
  afterAll(async () => {
    await exp?.stop();
  });
  return () => {
    if (!exp) throw new Error('sshfs export not started');
    return exp;
  };
}
