// The vmdn portal: catalog (/), an image's page (/image/NAME), publishing (/publish).
import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { html, useLocation, nameFromPath } from './ui.js';
import { Catalog } from './catalog.js';
import { ImagePage } from './image.js';
import { Publish } from './publish.js';

function App() {
  const loc = useLocation();
  let page;
  let title = 'vmdn portal';
  if (loc.path === '/publish') (page = html`<${Publish} query=${loc.query} />`), (title = 'Publish — vmdn portal');
  else if (loc.path.startsWith('/image/')) {
    const name = nameFromPath(loc.path);
    page = html`<${ImagePage} name=${name} tag=${loc.query.get('tag') || ''} />`;
    title = `${name} — vmdn portal`;
  } else page = html`<${Catalog} query=${loc.query} />`;
  useEffect(() => {
    document.title = title;
  }, [title]);
  return html`
    <header class="top">
      <a class="brand" href="/">vmdn</a>
      <nav aria-label="Main">
        <a href="/" aria-current=${loc.path === '/' ? 'page' : undefined}>Catalog</a>
        <a href="/publish" aria-current=${loc.path === '/publish' ? 'page' : undefined}>Publish</a>
      </nav>
    </header>
    <main id="main" tabindex="-1">${page}</main>
    <footer class="foot">Served by <code>vmdn serve</code>. API: <a href="/v1/images">/v1/images</a></footer>`;
}

render(html`<${App} />`, document.getElementById('app'));
